"""Builders shared by the tests: documents, rollouts in a given phase, gate results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from analysis.base import Verdict
from analysis.judges import GateResult
from canary.model import Phase, Rollout, TargetState
from config.spec import RolloutDocument, parse_document

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def lambda_target(function: str = "checkout", version: str = "2", **extra: Any) -> dict[str, Any]:
    return {
        "kind": "lambda-alias",
        "function": function,
        "alias": "live",
        "version": version,
    } | extra


def document(
    *,
    targets: list[dict[str, Any]] | None = None,
    steps: list[dict[str, Any]] | None = None,
    analysis: dict[str, Any] | None = None,
    name: str = "checkout",
) -> RolloutDocument:
    spec: dict[str, Any] = {"targets": targets or [lambda_target()]}
    if steps is not None:
        spec["steps"] = steps
    if analysis is not None:
        spec["analysis"] = analysis
    return parse_document(
        {"apiVersion": "canary/v1", "kind": "Rollout", "metadata": {"name": name}, "spec": spec}
    )


GATES = {
    "interval": "30s",
    "warmup": "0s",  # most machine tests judge from the first look; warm-up has its own
    "gates": [{"name": "errors", "provider": "cloudwatch", "query": "errors", "max": 0.01}],
}


def rollout(
    phase: Phase = Phase.PENDING,
    doc: RolloutDocument | None = None,
    *,
    started: bool = True,
    **fields: Any,
) -> Rollout:
    doc = doc or document(analysis=GATES)
    targets = tuple(
        TargetState(key=t.key(), kind=t.kind, stable="1" if started else None)
        for t in doc.spec.targets
    )
    base: dict[str, Any] = {
        "id": "r1",
        "document": doc,
        "phase": phase,
        "targets": targets,
        "created_at": T0,
        "updated_at": T0,
    }
    if phase == Phase.BAKING:
        base |= {"weight": doc.spec.steps[0].weight, "watching_since": T0, "next_check_at": at(30)}
        base["targets"] = tuple(t.model_copy(update={"weight": base["weight"]}) for t in targets)
    return Rollout(**(base | fields))


def result(verdict: Verdict, gate: str = "errors", value: float | None = 0.5) -> GateResult:
    return GateResult(gate=gate, verdict=verdict, explanation=f"{gate} {verdict}", value=value)
