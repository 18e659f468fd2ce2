"""Rollouts whose stored record no longer validates: how they are shown, and how to end them.

An older canary's bug (a ``bake`` stored as ``"Infinitys"``) or a hand edit can leave a
record that today's models refuse. Such a record must not take the daemon down with it:
the store reads it as ``Quarantined`` (``canary.store.base``), the engine never runs it,
and its traffic is left as it is. This module gives people what they need to act on it:
its view for the API (raw id, phase as stored, the error and what to do), and an abort
that works on whatever can still be read: each stored target is validated on its own, the
readable ones are rolled back through their strategies, and the record is marked rolled
back (or rollback failed) with events saying what was done to each target.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import TypeAdapter, ValidationError

from canary.events import EventKind, RollbackCause
from canary.model import NewEvent, Phase
from canary.store.base import Quarantined, StaleWrite, Store
from config.errors import problems_from_validation
from config.targets import Target
from strategies.base import Strategy, StrategyError
from strategies.registry import TargetSpec

if TYPE_CHECKING:
    from canary.engine import Engine

log = structlog.get_logger("canary.quarantine")

StrategyFactory = Callable[[Target, str | None], Strategy]

_TARGET: TypeAdapter[Target] = TypeAdapter(TargetSpec)


class Refused(Exception):
    """The quarantined rollout cannot take this command; the message says why and what to do."""


def fix(q: Quarantined) -> str:
    """What a person can do about ``q``."""
    if q.live:
        return (
            "canary does not run it and leaves its traffic as it is; abort it "
            f"(canary rollout abort {q.id} --reason ...) to roll its targets back to their "
            "stable versions and end it"
        )
    return "it has ended, so nothing runs it; it is shown as stored"


def summary(q: Quarantined) -> dict[str, Any]:
    """The API's rollout summary for ``q``, from whatever the record still holds, and a
    ``quarantine`` object with the error and the fix."""
    data = _mapping(q.record)
    document = _mapping(data.get("document"))
    steps = _mapping(document.get("spec")).get("steps")
    counters = _mapping(data.get("counters"))
    states = _list(data.get("targets"))
    return {
        "id": q.id,
        "name": q.name,
        "phase": q.phase,
        "live": q.live,
        "step": q.step,
        "steps": max(len(steps) if isinstance(steps, list) else 1, q.step, 1),
        "weight": q.weight,
        "reason": _text(data.get("reason")),
        "paused_reason": _text(data.get("paused_reason")),
        "targets": [_target_state(key, states, i) for i, key in enumerate(_keys(q, states))],
        "counters": {
            name: _count(counters.get(name))
            for name in ("failures", "inconclusive", "consecutive_errors")
        },
        "build": _text(_mapping(document.get("metadata")).get("build")),
        "created_by": _text(data.get("created_by")),
        "idempotency_key": q.idempotency_key,
        "created_at": q.created_at.isoformat(),
        "updated_at": q.updated_at.isoformat(),
        "quarantine": {"error": q.error, "fix": fix(q)},
    }


def detail(q: Quarantined) -> dict[str, Any]:
    """``summary`` and the document as stored (which is what does not validate)."""
    return summary(q) | {"document": _mapping(q.record).get("document")}


async def abort(
    store: Store,
    strategies: StrategyFactory,
    q: Quarantined,
    *,
    actor: str,
    reason: str | None,
    now: datetime,
    backend_timeout: float = 60.0,
) -> Quarantined:
    """Roll back every target of ``q`` that can be read, and record what was done.

    Raises ``Refused`` (nothing changed) if ``q`` has ended or none of its targets can be
    read. Ends ``rolled_back`` when every target serves its stable version; otherwise
    ``rollback_failed`` (still live, its targets still held), and another abort retries.
    """
    if not q.live:
        raise Refused(f"rollout {q.id} has already ended ({q.phase}); there is nothing to abort")
    readable, unreadable = read_targets(q)
    if not readable:
        raise Refused(
            f"rollout {q.id} is quarantined and none of its targets can be read "
            f"({'; '.join(unreadable.values()) or q.error}), so canary cannot roll it back: "
            f"restore the traffic of {', '.join(q.targets) or 'its targets'} by hand"
        )
    results: dict[str, str] = {}
    errors = dict(unreadable)
    for key, (target, stable, restored) in readable.items():
        if restored:
            results[key] = "already restored"
        elif stable is None:
            results[key] = "nothing to restore: no traffic was moved (it never started)"
        else:
            try:
                split = await asyncio.wait_for(
                    strategies(target, stable).rollback(), backend_timeout
                )
            except TimeoutError:
                errors[key] = f"the rollback did not answer within {backend_timeout:g}s"
                continue
            except StrategyError as exc:
                errors[key] = str(exc)
                continue
            if split.matches(0):
                results[key] = f"restored: serves its stable version {stable}"
            else:
                errors[key] = f"read back {split.describe()} after the rollback call"
    why = f"aborted by {actor}" + (f": {reason}" if reason else "")
    events = [
        NewEvent(
            kind=EventKind.COMMAND_ABORT,
            message=f"{why} (the rollout is quarantined: {q.error})",
            actor=actor,
            data={"reason": reason, "quarantined": q.error},
        )
    ]
    if errors:
        phase = Phase.ROLLBACK_FAILED
        ended = f"{why}; rollback failed on " + ", ".join(errors)
        events.append(
            NewEvent(
                kind=EventKind.ROLLBACK_FAILED,
                message="ROLLBACK FAILED, traffic is not fully restored: "
                + "; ".join(f"{k}: {m}" for k, m in errors.items())
                + "; abort again to retry",
                data={"errors": errors, "restored": results},
            )
        )
    else:
        phase = Phase.ROLLED_BACK
        ended = why
        events.append(
            NewEvent(
                kind=EventKind.ROLLOUT_ROLLED_BACK,
                message=f"rolled back: every target serves its stable version ({why})",
                data={"reason": why, "cause": RollbackCause.ABORTED, "restored": results},
                weight=0.0,
            )
        )
    try:
        stored, added = await store.resolve(q, phase, ended, events, now)
    except StaleWrite:
        raise Refused(
            f"rollout {q.id} changed while it was being aborted; look at it again "
            "(canary rollout status) and retry"
        ) from None
    for e in added:
        log.info(e.kind, rollout_id=q.id, phase=stored.phase, message=e.message)
    return stored


def read_targets(
    q: Quarantined,
) -> tuple[dict[str, tuple[Target, str | None, bool]], dict[str, str]]:
    """Each stored target validated on its own: (key -> (target, stable, restored)), and
    (key -> why it cannot be read)."""
    data = _mapping(q.record)
    specs = _mapping(_mapping(data.get("document")).get("spec")).get("targets")
    states = _list(data.get("targets"))
    if not isinstance(specs, list) or not specs:
        return {}, {key: "its spec is not readable" for key in q.targets}
    readable: dict[str, tuple[Target, str | None, bool]] = {}
    unreadable: dict[str, str] = {}
    for i, raw in enumerate(specs):
        state = _mapping(states[i]) if i < len(states) else {}
        key = _text(state.get("key")) or f"targets[{i}]"
        try:
            target = _TARGET.validate_python(raw)
        except ValidationError as exc:
            problems = "; ".join(str(p) for p in problems_from_validation(exc))
            unreadable[key] = f"the target does not validate: {problems}"
            continue
        stable = _text(state.get("stable"))
        readable[_text(state.get("key")) or target.key()] = (
            target,
            stable,
            state.get("restored") is True,
        )
    return readable, unreadable


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _number(value: Any) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else 0.0


def _keys(q: Quarantined, states: list[Any]) -> list[str]:
    from_record = [_text(_mapping(s).get("key")) for s in states]
    if from_record and all(from_record):
        return [k for k in from_record if k]
    return list(q.targets)


def _target_state(key: str, states: list[Any], i: int) -> dict[str, Any]:
    state = _mapping(states[i]) if i < len(states) else {}
    return {
        "key": key,
        "kind": _text(state.get("kind")) or key.split("/", 1)[0],
        "stable": _text(state.get("stable")),
        "weight": _number(state.get("weight")),
        "restored": state.get("restored") is True,
    }


async def command(
    engine: Engine, q: Quarantined, name: str, *, actor: str, reason: str | None
) -> dict[str, Any]:
    """A person's command on quarantined ``q``: only an abort applies. The rollout's
    detail afterwards; raises ``Refused``."""
    if name != "abort":
        raise Refused(
            f"rollout {q.id} is quarantined ({q.error}); {name} does not apply to it, "
            f"only abort: {fix(q)}"
        )
    # The engine's strategy factory (timed by its observer), so an abort of a quarantined
    # rollout calls the backends exactly as the engine's own rollback would.
    strategies: StrategyFactory = engine.runner.factory
    stored = await abort(
        engine.store,
        strategies,
        q,
        actor=actor,
        reason=reason,
        now=engine.clock.now(),
        backend_timeout=engine.options.backend_timeout,
    )
    return detail(stored)
