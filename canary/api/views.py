"""What the API sends for a rollout and for an event: plain JSON, stable field names.

These shapes are documented in the OpenAPI document (``canary.api.openapi``) and checked
against it by the schemathesis run, so a change here is a change of the API.
"""

from __future__ import annotations

from typing import Any

from canary.model import Event, Rollout


def rollout_summary(r: Rollout) -> dict[str, Any]:
    """A rollout without its spec: what lists and progress displays need."""
    canary = {t.key(): t.canary_version for t in r.spec.targets}
    return {
        "id": r.id,
        "name": r.name,
        "phase": r.phase.value,
        "live": r.phase.live,
        "step": r.step + 1,
        "steps": len(r.spec.steps),
        "weight": r.weight,
        "reason": r.reason,
        "paused_reason": r.paused_reason,
        "cause": r.cause.value if r.cause else None,
        "paused_cause": r.paused_cause.value if r.paused_cause else None,
        "targets": [
            {
                "key": t.key,
                "kind": t.kind,
                "stable": t.stable,
                "canary": canary.get(t.key),
                "weight": t.weight,
                "restored": t.restored,
            }
            for t in r.targets
        ],
        "counters": r.counters.model_dump(),
        "build": r.document.metadata.build,
        "created_by": r.created_by,
        "idempotency_key": r.idempotency_key,
        "created_at": r.created_at.isoformat(),
        "updated_at": r.updated_at.isoformat(),
    }


def rollout_detail(r: Rollout) -> dict[str, Any]:
    """A rollout with the spec it was started with, as submitted (normalised)."""
    return rollout_summary(r) | {"document": r.document.to_data()}


def event_data(e: Event) -> dict[str, Any]:
    return e.model_dump(mode="json")
