"""The rollout state machine: pure functions, no I/O, no clock of its own.

Two functions carry all the policy. ``decide(rollout, now)`` says what the engine should do
next (start, shift, check, promote, roll back, or wait until a time). ``apply(rollout,
input, now)`` folds in what happened (the result of that action, or a person's command)
and returns the new record with the events that explain it. The engine only performs I/O;
every decision, and the values it rests on, is made and worded here, so it can be tested
phase by phase without a backend.

Rules worth knowing (also in docs/architecture.md):

* Bake time counts only while the daemon watches: a pause, or a daemon that is down,
  stops the clock; resume (or restart) continues with the time that was left.
* Gates run every ``analysis.interval`` during a bake, with a final evaluation at its end.
  A step advances only on a final evaluation in which no gate failed or errored.
* Evaluations in the first ``analysis.warmup`` of a step's bake are recorded, not counted
  (warm-up after a shift); the one that ends a bake always counts. A ``dry_run`` gate is
  recorded and shown, never counted. ``on_failure: pause`` pauses where a rollback would be.
* Failed evaluations are counted over the whole rollout; inconclusive ones per step, from
  the end of its bake (before that they only mean the data is not in yet); provider errors
  in a row. Each is held against its own limit. Errors beyond ``consecutive_error_limit``
  roll back: an outage can never lead to a promotion.
* A split this daemon did not write is drift: the rollout pauses, it never fights a human.
* A start, shift or promotion that fails with a retryable error is tried again with
  backoff (``retry_at``, stored, so a restart keeps it) until the retry budget is spent;
  only then does it count as failed. A rollback is tried again until it is restored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from tenacity import RetryCallState, Retrying, wait_exponential

from analysis.base import Verdict
from analysis.judges import GateResult
from canary.events import ActionError, ErrorKind, EventKind, PauseCause, RollbackCause
from canary.model import Counters, NewEvent, Phase, Rollout, TargetState, new_rollout_id
from config.durations import display_duration
from config.spec import RolloutDocument
from strategies.base import TrafficSplit

K = EventKind


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed action is tried again: when, and for how long before it counts as failed.

    A start, shift or promotion that fails with a retryable error (temporary, timeout, a
    conflict over our own split) is tried again until ``budget`` seconds have passed since
    its first failure (a conflict: without a budget); a rollback is tried again until it is
    restored, budget or not.
    """

    budget: float = 300.0
    first: float = 5.0  # backoff: first wait, doubling
    cap: float = 300.0  # backoff: longest wait

    def delay(self, attempt: int, hint: float = 0.0) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based): the backoff, or the
        backend's ``hint`` when longer. Pure: tenacity computes the wait, nothing sleeps."""
        state = RetryCallState(Retrying(), None, (), {})
        state.attempt_number = max(1, attempt)
        backoff = wait_exponential(multiplier=self.first, max=self.cap)(state)
        return max(hint, float(backoff))


DEFAULT_RETRY = RetryPolicy()

# ---------------------------------------------------------------- inputs


CommandName = Literal["promote", "pause", "resume", "abort"]


@dataclass(frozen=True)
class Command:
    name: CommandName
    actor: str
    full: bool = False
    reason: str | None = None


@dataclass(frozen=True)
class Started:
    """Preflight passed and each target's stable version was read (or ``error``)."""

    stables: tuple[str | None, ...] = ()
    error: ActionError | None = None


@dataclass(frozen=True)
class ShiftResult:
    """Read-backs after shifting to ``weight``, one per target reached, in order."""

    weight: float
    splits: tuple[TrafficSplit, ...] = ()
    error: ActionError | None = None  # the target after the last split failed


@dataclass(frozen=True)
class CheckResult:
    """One look during a bake: every target's split (None: unreadable) and gate results."""

    splits: tuple[TrafficSplit | None, ...]
    results: tuple[GateResult, ...] = ()


@dataclass(frozen=True)
class PromoteResult:
    splits: tuple[TrafficSplit, ...] = ()
    error: ActionError | None = None


@dataclass(frozen=True)
class RollbackResult:
    restored: tuple[int, ...] = ()  # target indexes read back at 0%
    errors: dict[int, ActionError] = field(default_factory=dict)


@dataclass(frozen=True)
class Restarted:
    """The engine started over this record: what each target serves now."""

    splits: tuple[TrafficSplit | None, ...]


@dataclass(frozen=True)
class HooksAnswered:
    """The answers of the hooks a ``RunHooks`` asked, in its order (step: 0-based)."""

    point: str
    step: int
    results: tuple[GateResult, ...] = ()


Input = (
    Command
    | Started
    | ShiftResult
    | CheckResult
    | PromoteResult
    | RollbackResult
    | Restarted
    | HooksAnswered
)

# ---------------------------------------------------------------- actions


@dataclass(frozen=True)
class Start:
    pass


@dataclass(frozen=True)
class Shift:
    weight: float


@dataclass(frozen=True)
class Check:
    pass


@dataclass(frozen=True)
class Promote:
    pass


@dataclass(frozen=True)
class Rollback:
    targets: tuple[int, ...]  # in the order to roll back: reverse of the spec


@dataclass(frozen=True)
class RunHooks:
    """Ask these hooks (spec.hooks names) at ``point``: canary/actions.py runs them."""

    point: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class Wait:
    until: datetime | None  # None: until a command arrives


@dataclass(frozen=True)
class Done:
    pass


Action = Start | Shift | Check | Promote | Rollback | RunHooks | Wait | Done


class CommandRejected(Exception):
    """A command that makes no sense in the rollout's phase; the message says why."""


@dataclass(frozen=True)
class Transition:
    rollout: Rollout
    events: list[NewEvent]
    changed: bool = True


# ---------------------------------------------------------------- decide

RETRYING = frozenset(
    {Phase.PENDING, Phase.SHIFTING, Phase.PROMOTING, Phase.ROLLING_BACK, Phase.ROLLBACK_FAILED}
)


def decide(r: Rollout, now: datetime) -> Action:
    """What the engine should do next for ``r`` at ``now``."""
    if r.phase in RETRYING and r.retry_at is not None and now < r.retry_at:
        return Wait(r.retry_at)  # a failed action is tried again then
    hooks = hooks_due(r)
    match r.phase:
        case Phase.PENDING:
            return hooks or Start()
        case Phase.SHIFTING:
            return Shift(r.current_step.weight)
        case Phase.BAKING:
            if r.next_check_at is None or now >= r.next_check_at:
                return hooks or Check()
            return Wait(r.next_check_at)
        case Phase.AWAITING_APPROVAL | Phase.PAUSED:
            return Wait(None)
        case Phase.PROMOTING:
            return hooks or Promote()
        case Phase.SUCCEEDED | Phase.ROLLED_BACK if hooks is not None:
            return hooks
        case Phase.ROLLING_BACK | Phase.ROLLBACK_FAILED:
            pending = [i for i, t in enumerate(r.targets) if not t.restored]
            return Rollback(tuple(reversed(pending)))
    return Done()


def intent(r: Rollout, action: Action) -> NewEvent | None:
    """The write-ahead record of an action, stored before the backend is touched."""
    names = ", ".join(t.key for t in r.targets)
    attempt = f" (attempt {r.attempts + 1})" if r.attempts else ""
    match action:
        case Shift(weight=w):
            return _ev(
                K.TRAFFIC_SHIFTING,
                f"shifting to {w:g}% (from {r.weight:g}%) on {names}{attempt}",
                weight=w,
                previous=r.weight,
                attempt=r.attempts + 1,
            )
        case Promote():
            return _ev(
                K.PROMOTION_CALLING,
                f"making the canary the stable version on {names}{attempt}",
                attempt=r.attempts + 1,
            )
        case Rollback(targets=order):
            keys = ", ".join(r.targets[i].key for i in order)
            return _ev(
                K.ROLLBACK_CALLING,
                f"restoring the stable version on {keys}{attempt}",
                attempt=r.attempts + 1,
            )
    return None


# ---------------------------------------------------------------- apply


def apply(
    r: Rollout, event: Input, now: datetime, retry: RetryPolicy = DEFAULT_RETRY
) -> Transition:
    """Fold ``event`` into ``r``. Raises ``CommandRejected`` for a command out of place."""
    match event:
        case Command():
            return _command(r, event, now)
        case Started():
            return _started(r, event, now, retry)
        case ShiftResult():
            return _shifted(r, event, now, retry)
        case CheckResult():
            return _checked(r, event, now)
        case PromoteResult():
            return _promoted(r, event, now, retry)
        case RollbackResult():
            return _rolled_back(r, event, now, retry)
        case Restarted():
            return _restarted(r, event, now)
        case HooksAnswered():
            return _hooks_answered(r, event, now)
    raise TypeError(f"unknown input {event!r}")


def _ev(
    kind: EventKind,
    message: str,
    actor: str | None = None,
    at_step: tuple[int, float] | None = None,
    **data: Any,
) -> NewEvent:
    step, weight = at_step if at_step is not None else (None, None)
    return NewEvent(kind=kind, message=message, actor=actor, data=data, step=step, weight=weight)


# Cleared whenever the rollout moves on: a new action starts with a fresh retry budget.
NOT_RETRYING: dict[str, Any] = {"retry_at": None, "attempts": 0, "failing_since": None}


def _retry_later(
    r: Rollout, now: datetime, error: ActionError, retry: RetryPolicy, *, budgeted: bool = True
) -> Rollout | None:
    """``r`` waiting to try its action again after ``error``; None: it counts as failed."""
    since = r.failing_since or now
    attempts = r.attempts + 1
    at = now + timedelta(seconds=retry.delay(attempts, error.delay))
    if budgeted:
        deadline = since + timedelta(seconds=retry.budget)
        if not error.retryable or now >= deadline:
            return None
        at = min(at, deadline)  # the last attempt lands on the budget's end
    return r.model_copy(update={"attempts": attempts, "retry_at": at, "failing_since": since})


def _retry_event(
    kind: EventKind, what: str, waiting: Rollout, now: datetime, error: ActionError
) -> NewEvent:
    assert waiting.retry_at is not None
    wait = (waiting.retry_at - now).total_seconds()
    return _ev(
        kind,
        f"{what} failed (attempt {waiting.attempts}, {error.kind.value}), retrying in "
        f"{display_duration(wait)}: {error}",
        error=error.to_data(),
        attempt=waiting.attempts,
        retry_in=wait,
    )


def _gave_up(r: Rollout, now: datetime, error: ActionError, retry: RetryPolicy) -> str:
    """Why a failing action counts as failed now: the error's class, or the spent budget."""
    if not error.retryable:
        return f"{error} ({error.kind.value}: retrying cannot help)"
    since = r.failing_since or now
    spent = display_duration((now - since).total_seconds())
    return (
        f"{error} (still failing after {r.attempts + 1} attempts over {spent}; the retry "
        f"budget is {display_duration(retry.budget)})"
    )


def _with_weights(r: Rollout, splits: Sequence[TrafficSplit | None]) -> Rollout:
    targets = list(r.targets)
    for i, split in enumerate(splits):
        if split is not None and split.canary_weight is not None and i < len(targets):
            targets[i] = targets[i].model_copy(update={"weight": split.canary_weight})
    return r.model_copy(update={"targets": tuple(targets)})


@dataclass(frozen=True)
class Drift:
    """A target serving a split this daemon could not have written."""

    target: str
    observed: TrafficSplit
    expected: tuple[float, ...]

    def summary(self) -> str:
        expected = " or ".join(f"{w:g}%" for w in dict.fromkeys(self.expected))
        seen = self.observed.describe()
        return f"{self.target} serves {seen}, not the {expected} this daemon set"

    def data(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "expected": list(self.expected),
            "observed": self.observed.canary_weight,
            "detail": self.observed.detail,
        }


def _drift(
    r: Rollout, splits: Sequence[TrafficSplit | None], allowed: Sequence[Sequence[float]]
) -> Drift | None:
    """The first target whose split is none of the weights this daemon could have written."""
    for i, split in enumerate(splits):
        if split is None:
            continue
        if not any(split.matches(w) for w in allowed[i]):
            return Drift(r.targets[i].key, split, tuple(allowed[i]))
    return None


def _pause(
    r: Rollout,
    now: datetime,
    cause: PauseCause,
    reason: str,
    events: list[NewEvent],
    **data: Any,
) -> Rollout:
    elapsed = r.bake_elapsed
    if r.watching_since is not None:
        elapsed += (now - r.watching_since).total_seconds()
    events.append(
        _ev(K.ROLLOUT_PAUSED, f"paused: {reason}", reason=reason, cause=cause.value, **data)
    )
    return r.model_copy(
        update={
            "phase": Phase.PAUSED,
            "paused_reason": reason,
            "paused_cause": cause,
            "bake_elapsed": elapsed,
            "watching_since": None,
            "next_check_at": None,
            **NOT_RETRYING,
        }
    )


def _pause_for_drift(
    r: Rollout, now: datetime, drift: Drift, events: list[NewEvent], *, restart: bool = False
) -> Rollout:
    events.append(
        _ev(
            K.TRAFFIC_DRIFT,
            f"{drift.summary()}; someone else changed it. Paused: fix the target, then resume "
            "(canary re-applies its weight) or abort (canary restores stable)",
            **drift.data(),
        )
    )
    reason = ("drift found at restart: " if restart else "drift: ") + drift.summary()
    return _pause(r, now, PauseCause.DRIFT, reason, events, **drift.data())


def _rollback(
    r: Rollout, cause: RollbackCause, reason: str, events: list[NewEvent], **data: Any
) -> Rollout:
    events.append(
        _ev(
            K.ROLLBACK_STARTED,
            f"rolling back: {reason}",
            reason=reason,
            cause=cause.value,
            **data,
        )
    )
    return r.model_copy(
        update={
            "phase": Phase.ROLLING_BACK,
            "reason": reason,
            "cause": cause,
            "paused_reason": None,
            "paused_cause": None,
            "watching_since": None,
            "next_check_at": None,
            **NOT_RETRYING,
            "targets": tuple(t.model_copy(update={"restored": False}) for t in r.targets),
        }
    )


def _advance(r: Rollout, now: datetime, events: list[NewEvent], why: str) -> Rollout:
    """Leave the current step for the next one, or for promotion after the last."""
    base = {
        "paused_reason": None,
        "paused_cause": None,
        "bake_elapsed": 0.0,
        "watching_since": None,
        "next_check_at": None,
        "counters": r.counters.model_copy(update={"inconclusive": 0, "consecutive_errors": 0}),
        **NOT_RETRYING,
        "hooks": _hooks_for_next_step(r),
    }
    if r.last_step:
        events.append(_ev(K.PROMOTION_STARTED, f"{why}; promoting the canary"))
        return r.model_copy(update={**base, "phase": Phase.PROMOTING})
    nxt = r.spec.steps[r.step + 1]
    events.append(
        _ev(
            K.STEP_STARTED,
            f"{why}; step {r.step + 2}/{len(r.spec.steps)}: shifting to {nxt.weight:g}%",
            step=r.step + 2,
            weight=nxt.weight,
        )
    )
    return r.model_copy(update={**base, "phase": Phase.SHIFTING, "step": r.step + 1})


def _complete_step(r: Rollout, now: datetime, events: list[NewEvent], why: str) -> Rollout:
    if r.current_step.approval:
        events.append(
            _ev(
                K.STEP_AWAITING_APPROVAL,
                f"{why}; step {r.step + 1} needs approval: promote to continue, abort to roll back",
            )
        )
        return r.model_copy(
            update={"phase": Phase.AWAITING_APPROVAL, "watching_since": None, "next_check_at": None}
        )
    return _advance(r, now, events, why)


def _next_check(r: Rollout, now: datetime) -> datetime:
    remaining = r.bake_remaining(now)
    interval = r.spec.analysis.interval
    delay = min(interval, remaining) if remaining > 0 else interval
    return now + timedelta(seconds=delay)


def _begin_bake(r: Rollout, now: datetime, events: list[NewEvent], settle: float = 0.0) -> Rollout:
    """``settle``: seconds until clients see the shift (a target's poll); the bake starts
    after them, and evaluations until then are warm-up (recorded, not counted)."""
    step = r.current_step
    since = now + timedelta(seconds=settle) if step.bake and not r.bake_elapsed else now
    r = r.model_copy(update={"phase": Phase.BAKING, "watching_since": since})
    if _step_hooks(r):  # asked right after the shift; a step with hooks waits for them
        r = r.model_copy(update={"hooks": r.hooks.model_copy(update={"ran_at": None})})
        if step.bake == 0:
            return r.model_copy(update={"next_check_at": now})
        baking = _begin_bake_without_hooks(r, now, events, settle)
        return baking.model_copy(update={"next_check_at": now})
    return _begin_bake_without_hooks(r, now, events, settle)


def _begin_bake_without_hooks(
    r: Rollout, now: datetime, events: list[NewEvent], settle: float = 0.0
) -> Rollout:
    step = r.current_step
    since = r.watching_since or now
    if step.bake == 0:
        return _complete_step(r, now, events, f"{step.weight:g}% reached")
    remaining = r.bake_remaining(now)
    if remaining <= 0:
        return r.model_copy(update={"next_check_at": now})
    text = f"baking {display_duration(remaining)} at {step.weight:g}%"
    if since > now:
        text += f" ({display_duration(settle)} of it for clients to poll the change)"
    if r.bake_elapsed:
        text += f" ({display_duration(r.bake_elapsed)} of {display_duration(step.bake)} done)"
    events.append(_ev(K.BAKE_STARTED, text, remaining=remaining, bake=step.bake, settle=settle))
    first = min(remaining, r.spec.analysis.interval)
    return r.model_copy(update={"next_check_at": now + timedelta(seconds=first)})


def _started(r: Rollout, e: Started, now: datetime, retry: RetryPolicy) -> Transition:
    if r.phase != Phase.PENDING:
        return Transition(r, [], changed=False)
    if e.error is not None:
        waiting = _retry_later(r, now, e.error, retry)
        if waiting is not None:
            return Transition(
                waiting, [_retry_event(K.PREFLIGHT_FAILED, "preflight", waiting, now, e.error)]
            )
        reason = f"preflight failed, nothing was changed: {_gave_up(r, now, e.error, retry)}"
        return Transition(
            r.model_copy(update={"phase": Phase.FAILED, "reason": reason, **NOT_RETRYING}),
            [_ev(K.ROLLOUT_FAILED, reason, error=e.error.to_data(), attempt=r.attempts + 1)],
        )
    targets = tuple(
        t.model_copy(update={"stable": s}) for t, s in zip(r.targets, e.stables, strict=True)
    )
    step = r.spec.steps[0]
    stables = ", ".join(f"{t.key} stable {t.stable}" for t in targets)
    events = [
        _ev(
            K.ROLLOUT_STARTED,
            f"started: {stables}",
            stables=[t.stable for t in targets],
        ),
        _ev(
            K.STEP_STARTED,
            f"step 1/{len(r.spec.steps)}: shifting to {step.weight:g}%",
            step=1,
            weight=step.weight,
        ),
    ]
    return Transition(
        r.model_copy(
            update={"phase": Phase.SHIFTING, "targets": targets, "step": 0, **NOT_RETRYING}
        ),
        events,
    )


def _retry_or_roll_back(
    r: Rollout,
    now: datetime,
    error: ActionError,
    retry: RetryPolicy,
    what: str,
    failed: tuple[K, RollbackCause],
    events: list[NewEvent],
) -> Transition:
    """A shift or promotion that failed: tried again later while the error is retryable
    and the budget lasts (an event per attempt), else rolled back with ``failed``'s cause."""
    kind, cause = failed
    # A conflict (the backend busy with someone else's change) waits as long as it takes:
    # another's deployment is never a reason to roll back.
    budgeted = error.kind is not ErrorKind.CONFLICT
    waiting = _retry_later(r, now, error, retry, budgeted=budgeted)
    if waiting is not None:
        events.append(_retry_event(kind, what, waiting, now, error))
        return Transition(waiting, events)
    reason = f"{what} failed: {_gave_up(r, now, error, retry)}"
    r = _rollback(r, cause, reason, events, error=error.to_data(), attempt=r.attempts + 1)
    return Transition(r, events)


def _shifted(r: Rollout, e: ShiftResult, now: datetime, retry: RetryPolicy) -> Transition:
    events: list[NewEvent] = []
    before = r
    r = _with_weights(r, e.splits)
    drift = _drift(before, e.splits, [(e.weight,)] * len(e.splits))
    if r.phase != Phase.SHIFTING or e.weight != r.current_step.weight:
        # A command moved the rollout on while this shift was in flight: keep the read-back.
        return Transition(r, events)
    if drift is not None:
        return Transition(_pause_for_drift(r, now, drift, events), events)
    if e.error is not None:
        what = f"shift to {e.weight:g}%"
        failed = (K.TRAFFIC_SHIFT_FAILED, RollbackCause.SHIFT_FAILED)
        return _retry_or_roll_back(r, now, e.error, retry, what, failed, events)
    events.append(
        _ev(
            K.TRAFFIC_SHIFTED,
            f"traffic at {e.weight:g}% on {len(e.splits)} target(s), read back: "
            + "; ".join(s.describe() for s in e.splits),
            weight=e.weight,
            observed=[s.canary_weight for s in e.splits],
        )
    )
    r = r.model_copy(update={"weight": e.weight, **NOT_RETRYING})
    settle = max((s.settle for s in e.splits), default=0.0)
    return Transition(_begin_bake(r, now, events, settle), events)


def _summary(results: Sequence[GateResult], dry: frozenset[str] | set[str] = frozenset()) -> str:
    """The results' explanations; a dry-run gate's marked as not counted."""
    said = [
        res.explanation + (" (dry run: not counted)" if res.gate in dry else "") for res in results
    ]
    return " · ".join(said) or "no gates"


def _checked(r: Rollout, e: CheckResult, now: datetime) -> Transition:
    if r.phase != Phase.BAKING:
        return Transition(r, [], changed=False)
    events: list[NewEvent] = []
    watched = r.bake_elapsed
    if r.watching_since is not None:
        watched += (now - r.watching_since).total_seconds()
    drift = _drift(r, e.splits, [(r.weight,)] * len(e.splits))
    r = _with_weights(r, e.splits).model_copy(
        update={"bake_elapsed": watched, "watching_since": now}
    )
    if drift is not None:
        return Transition(_pause_for_drift(r, now, drift, events), events)

    a = r.spec.analysis
    dry = {g.name for g in a.gates if g.dry_run}
    counted = [res for res in e.results if res.gate not in dry]
    verdicts = {res.verdict for res in counted}
    failed = Verdict.FAIL in verdicts
    errored = Verdict.ERROR in verdicts
    inconclusive = Verdict.INCONCLUSIVE in verdicts
    remaining = r.bake_remaining(now)
    if remaining > 0 and watched < a.warmup:
        # Warm-up: caches, connections and JIT after a shift are not the release's fault.
        # Recorded and shown, never counted; the evaluation that ends a bake always counts.
        left = a.warmup - watched
        if e.results:
            events.append(
                _ev(
                    K.ANALYSIS_EVALUATED,
                    f"gates at {r.weight:g}% (warm-up, {display_duration(left)} left: not "
                    f"counted): {_summary(e.results, dry)}",
                    at_step=(r.step + 1, r.weight),
                    results=[res.to_data() for res in e.results],
                    counters=r.counters.model_dump(),
                    warmup={"warmup": a.warmup, "remaining": left},
                    bake_remaining=remaining,
                )
            )
        return Transition(r.model_copy(update={"next_check_at": _next_check(r, now)}), events)
    # Low traffic: past the bake, gates that only lack samples extend it up to max_bake.
    step = r.current_step
    max_bake = step.max_bake if step.max_bake is not None else a.max_bake
    starved = inconclusive and all(
        res.starved for res in counted if res.verdict == Verdict.INCONCLUSIVE
    )
    lacking = starved and not failed and not errored and remaining <= 0 and max_bake is not None
    extend = lacking and max_bake is not None and watched < max_bake
    # While the bake runs, INCONCLUSIVE means the data is not in yet (the window still
    # fills with this step's traffic); only evaluations that could end the step count.
    c = Counters(
        failures=r.counters.failures + failed,
        inconclusive=r.counters.inconclusive + (inconclusive and remaining <= 0 and not extend),
        consecutive_errors=r.counters.consecutive_errors + 1 if errored else 0,
    )
    r = r.model_copy(update={"counters": c})
    if e.results:
        events.append(
            _ev(
                K.ANALYSIS_EVALUATED,
                f"gates at {r.weight:g}%: {_summary(e.results, dry)}",
                at_step=(r.step + 1, r.weight),
                results=[
                    res.to_data() | ({"dry_run": True} if res.gate in dry else {})
                    for res in e.results
                ],
                counters=c.model_dump(),
                limits={
                    "failure_limit": a.failure_limit,
                    "inconclusive_limit": a.inconclusive_limit,
                    "consecutive_error_limit": a.consecutive_error_limit,
                },
                bake_remaining=remaining,
            )
        )

    def worst(v: Verdict) -> str:
        return _summary([res for res in counted if res.verdict == v])

    if failed and c.failures > a.failure_limit:
        reason = (
            f"{c.failures} failed evaluation(s), more than failure_limit {a.failure_limit}: "
            f"{worst(Verdict.FAIL)}"
        )
        if a.on_failure == "pause":
            reason += (
                "; on_failure is pause: abort to roll back, resume to keep judging (each "
                "further failure pauses again), promote to move on"
            )
            return Transition(
                _pause(r, now, PauseCause.GATE_FAILED, reason, events, verdict="FAIL"), events
            )
        r = _rollback(r, RollbackCause.GATE_FAILED, reason, events, verdict="FAIL")
        return Transition(r, events)
    if errored and c.consecutive_errors > a.consecutive_error_limit:
        reason = (
            f"{c.consecutive_errors} evaluations in a row could not be measured, more than "
            f"consecutive_error_limit {a.consecutive_error_limit}: {worst(Verdict.ERROR)}"
        )
        r = _rollback(r, RollbackCause.PROVIDER_ERRORS, reason, events, verdict="ERROR")
        return Transition(r, events)
    if extend and max_bake is not None:
        stuck = [res for res in counted if res.verdict == Verdict.INCONCLUSIVE]
        events.append(
            _ev(
                K.BAKE_EXTENDED,
                f"bake at {r.weight:g}% extended: {display_duration(watched)} of max_bake "
                f"{display_duration(max_bake)} used, the gates lack samples: {_summary(stuck)}",
                watched=watched,
                bake=step.bake,
                max_bake=max_bake,
                gates=[
                    {"gate": res.gate, "samples": res.samples}
                    | ({"target": res.target} if res.target else {})
                    for res in stuck
                ],
            )
        )
        return Transition(r.model_copy(update={"next_check_at": _next_check(r, now)}), events)
    # max_bake spent and still lacking samples: on_inconclusive applies now.
    inconclusive_over = inconclusive and (c.inconclusive > a.inconclusive_limit or lacking)
    if inconclusive_over and a.on_inconclusive != "continue":
        reason = (
            f"{c.inconclusive} inconclusive evaluation(s) at this step, more than "
            f"inconclusive_limit {a.inconclusive_limit}: {worst(Verdict.INCONCLUSIVE)}"
        )
        if lacking and max_bake is not None:
            reason = (
                f"still too few samples after max_bake {display_duration(max_bake)} at "
                f"{r.weight:g}%: {worst(Verdict.INCONCLUSIVE)}"
            )
        if a.on_inconclusive == "rollback":
            r = _rollback(r, RollbackCause.INCONCLUSIVE, reason, events, verdict="INCONCLUSIVE")
            return Transition(r, events)
        reason += "; resume to keep judging, promote to move on, abort to roll back"
        return Transition(_pause(r, now, PauseCause.INCONCLUSIVE, reason, events), events)

    passing = not failed and not errored and (not inconclusive or inconclusive_over)
    if passing and remaining <= 0 and _step_hooks_passed(r):
        why = f"bake of {display_duration(r.current_step.bake)} at {r.weight:g}% passed"
        if inconclusive_over:
            why += " (inconclusive accepted: on_inconclusive is continue)"
        return Transition(_complete_step(r, now, events, why), events)
    return Transition(r.model_copy(update={"next_check_at": _next_check(r, now)}), events)


def _promoted(r: Rollout, e: PromoteResult, now: datetime, retry: RetryPolicy) -> Transition:
    r = _with_weights(r, e.splits)
    if r.phase != Phase.PROMOTING:
        return Transition(r, [])
    events: list[NewEvent] = []
    drift = _drift(r, e.splits, [(100.0,)] * len(e.splits))
    if drift is not None:
        return Transition(_pause_for_drift(r, now, drift, events), events)
    if e.error is not None:
        failed = (K.PROMOTION_FAILED, RollbackCause.PROMOTION_FAILED)
        return _retry_or_roll_back(r, now, e.error, retry, "promotion", failed, events)
    events.append(
        _ev(K.ROLLOUT_SUCCEEDED, "promoted: the canary is now the stable version on every target")
    )
    return Transition(
        r.model_copy(
            update={
                "phase": Phase.SUCCEEDED,
                "weight": 100.0,
                "reason": "promoted",
                **NOT_RETRYING,
            }
        ),
        events,
    )


def _rolled_back(r: Rollout, e: RollbackResult, now: datetime, retry: RetryPolicy) -> Transition:
    if r.phase not in (Phase.ROLLING_BACK, Phase.ROLLBACK_FAILED):
        return Transition(r, [], changed=False)
    targets = tuple(
        t.model_copy(update={"restored": True, "weight": 0.0}) if i in e.restored else t
        for i, t in enumerate(r.targets)
    )
    r = r.model_copy(update={"targets": targets})
    events: list[NewEvent] = []
    if all(t.restored for t in targets):
        events.append(
            _ev(
                K.ROLLOUT_ROLLED_BACK,
                f"rolled back: every target serves its stable version ({r.reason})",
                reason=r.reason,
                cause=r.cause.value if r.cause else None,
            )
        )
        return Transition(
            r.model_copy(update={"phase": Phase.ROLLED_BACK, "weight": 0.0, **NOT_RETRYING}),
            events,
        )
    # Restoring stable is never given up: retried, budget or not, until it is read back.
    attempts = r.attempts + 1
    wait = retry.delay(attempts, max((err.delay for err in e.errors.values()), default=0.0))
    events.append(
        _ev(
            K.ROLLBACK_FAILED,
            f"ROLLBACK FAILED (attempt {attempts}), traffic is not fully restored; "
            f"retrying in {display_duration(wait)}: "
            + "; ".join(str(err) for err in e.errors.values()),
            errors={r.targets[i].key: err.to_data() for i, err in e.errors.items()},
            attempt=attempts,
            retry_in=wait,
        )
    )
    return Transition(
        r.model_copy(
            update={
                "phase": Phase.ROLLBACK_FAILED,
                "attempts": attempts,
                "retry_at": now + timedelta(seconds=wait),
                "failing_since": r.failing_since or now,
            }
        ),
        events,
    )


def _restarted(r: Rollout, e: Restarted, now: datetime) -> Transition:
    events: list[NewEvent] = []
    if r.phase in (Phase.SHIFTING, Phase.BAKING, Phase.AWAITING_APPROVAL):
        allowed: list[tuple[float, ...]]
        if r.phase == Phase.SHIFTING:
            allowed = [(t.weight, r.current_step.weight) for t in r.targets]
        else:
            allowed = [(t.weight,) for t in r.targets]
        drift = _drift(r, e.splits, allowed)
        if drift is not None:
            if r.phase == Phase.BAKING:
                r = r.model_copy(update={"watching_since": None})
            return Transition(_pause_for_drift(r, now, drift, events, restart=True), events)
    if r.phase == Phase.BAKING:
        # Bake time since the last checkpoint was not watched, so it is not counted.
        r = r.model_copy(update={"watching_since": now})
        left = r.bake_remaining(now)
        events.append(
            _ev(
                K.DAEMON_RESUMED,
                f"daemon restarted mid-bake: resuming with {display_duration(left)} of bake left "
                "(time while the daemon was down is not counted)",
                bake_remaining=left,
            )
        )
        return Transition(r.model_copy(update={"next_check_at": _next_check(r, now)}), events)
    events.append(_ev(K.DAEMON_RESUMED, f"daemon restarted: resuming in phase {r.phase.value}"))
    return Transition(r, events)


# ---------------------------------------------------------------- commands


def _reject(r: Rollout, command: str, why: str) -> CommandRejected:
    return CommandRejected(f"cannot {command} rollout {r.id} ({r.phase.value}): {why}")


def _command(r: Rollout, c: Command, now: datetime) -> Transition:
    if r.phase.terminal:
        raise _reject(r, c.name, "it has already ended; start a new rollout")
    match c.name:
        case "promote":
            return _cmd_promote(r, c, now)
        case "pause":
            return _cmd_pause(r, c, now)
        case "resume":
            return _cmd_resume(r, c, now)
        case "abort":
            return _cmd_abort(r, c, now)
    raise _reject(r, c.name, "unknown command")


def _noop(r: Rollout) -> Transition:
    return Transition(r, [], changed=False)


def _issued(r: Rollout, kind: EventKind, message: str, c: Command, **data: Any) -> NewEvent:
    """A command's event, at the step and weight it was issued at (not those it leads to)."""
    return _ev(kind, message, actor=c.actor, at_step=(r.step + 1, r.weight), **data)


def _cmd_promote(r: Rollout, c: Command, now: datetime) -> Transition:
    if r.phase == Phase.PROMOTING:
        return _noop(r)
    if r.phase in (Phase.ROLLING_BACK, Phase.ROLLBACK_FAILED):
        raise _reject(r, "promote", "a rollback cannot be promoted; start a new rollout")
    if r.phase == Phase.PENDING:
        raise _reject(r, "promote", "it has not started yet; try again in a moment")
    events = [
        _issued(
            r,
            K.COMMAND_PROMOTE,
            f"promote{' --full' if c.full else ''} by {c.actor}",
            c,
            full=c.full,
            reason=c.reason,
        )
    ]
    why = f"promoted by {c.actor}"
    if r.phase == Phase.BAKING:
        why += f", skipping {display_duration(r.bake_remaining(now))} of bake"
    if c.full:
        skipped = len(r.spec.steps) - r.step - 1
        events.append(
            _ev(
                K.PROMOTION_STARTED,
                f"promoted by {c.actor} with --full, skipping {skipped} remaining step(s) "
                "and their gates",
                actor=c.actor,
            )
        )
        return Transition(
            r.model_copy(
                update={
                    "phase": Phase.PROMOTING,
                    "paused_reason": None,
                    "paused_cause": None,
                    "next_check_at": None,
                    **NOT_RETRYING,
                }
            ),
            events,
        )
    return Transition(_advance(r, now, events, why), events)


def _cmd_pause(r: Rollout, c: Command, now: datetime) -> Transition:
    if r.phase == Phase.PAUSED:
        return _noop(r)
    if r.phase == Phase.PROMOTING:
        raise _reject(r, "pause", "a promotion is in flight; abort to roll back instead")
    if r.phase in (Phase.ROLLING_BACK, Phase.ROLLBACK_FAILED):
        raise _reject(r, "pause", "a rollback is never paused")
    events = [_issued(r, K.COMMAND_PAUSE, f"pause by {c.actor}", c, reason=c.reason)]
    why = f"by {c.actor}" + (f": {c.reason}" if c.reason else "")
    return Transition(_pause(r, now, PauseCause.MANUAL, why, events), events)


def _cmd_resume(r: Rollout, c: Command, now: datetime) -> Transition:
    if r.phase != Phase.PAUSED:
        raise _reject(r, "resume", "it is not paused")
    events = [_issued(r, K.COMMAND_RESUME, f"resume by {c.actor}", c)]
    counters = r.counters.model_copy(update={"inconclusive": 0, "consecutive_errors": 0})
    phase = Phase.SHIFTING if r.started else Phase.PENDING
    left = r.current_step.bake - r.bake_elapsed
    events.append(
        _ev(
            K.ROLLOUT_RESUMED,
            f"resumed by {c.actor}: re-applying {r.current_step.weight:g}%, "
            f"{display_duration(max(0.0, left))} of bake left",
            actor=c.actor,
        )
    )
    return Transition(
        r.model_copy(
            update={
                "phase": phase,
                "paused_reason": None,
                "paused_cause": None,
                "counters": counters,
                **NOT_RETRYING,
            }
        ),
        events,
    )


def _cmd_abort(r: Rollout, c: Command, now: datetime) -> Transition:
    if r.phase in (Phase.ROLLING_BACK, Phase.ROLLBACK_FAILED):
        return _noop(r)
    why = f"aborted by {c.actor}" + (f": {c.reason}" if c.reason else "")
    events = [_issued(r, K.COMMAND_ABORT, why, c, reason=c.reason)]
    if r.phase == Phase.PENDING:
        reason = f"{why} before any traffic moved"
        cause = RollbackCause.ABORTED
        events.append(_ev(K.ROLLOUT_ROLLED_BACK, reason, reason=reason, cause=cause.value))
        return Transition(
            r.model_copy(
                update={
                    "phase": Phase.ROLLED_BACK,
                    "reason": reason,
                    "cause": cause,
                    **NOT_RETRYING,
                }
            ),
            events,
        )
    return Transition(_rollback(r, RollbackCause.ABORTED, why, events), events)


def new_targets(keys_kinds: Sequence[tuple[str, str]]) -> tuple[TargetState, ...]:
    return tuple(TargetState(key=k, kind=kind) for k, kind in keys_kinds)


def new_rollout(
    document: RolloutDocument, actor: str, now: datetime, idempotency_key: str | None = None
) -> tuple[Rollout, NewEvent]:
    """A new rollout record and the event of its creation, for ``Store.create``."""
    rollout = Rollout(
        id=new_rollout_id(now),
        document=document,
        targets=new_targets([(t.key(), t.kind) for t in document.spec.targets]),
        created_at=now,
        updated_at=now,
        created_by=actor,
        idempotency_key=idempotency_key,
    )
    created = _ev(
        K.ROLLOUT_CREATED,
        f"created by {actor}: {document.metadata.name}, plan {document.describe_plan()}",
        actor=actor,
        build=document.metadata.build,
    )
    return rollout, created


# ---------------------------------------------------------------- hooks


def _hooks_of(r: Rollout, point: str) -> list[Any]:
    """The spec's hooks at ``point``; at a step, those of the current step."""
    if point == "step":
        return _step_hooks(r)
    return [h for h in r.spec.hooks if h.point == point]


def _step_hooks(r: Rollout) -> list[Any]:
    weight = r.current_step.weight
    return [h for h in r.spec.hooks if h.at_step(weight)]


def _step_hooks_passed(r: Rollout) -> bool:
    return all(h.name in r.hooks.passed for h in _step_hooks(r))


HOOK_POINT = {
    Phase.PENDING: "pre-rollout",
    Phase.BAKING: "step",
    Phase.PROMOTING: "pre-promotion",
    Phase.SUCCEEDED: "post-rollout",
    Phase.ROLLED_BACK: "on-rollback",
}


def hooks_due(r: Rollout) -> RunHooks | None:
    """The hooks to ask before the phase's own action, if any.

    A gate hook is asked until it answers PASS (at a step: ``every-interval`` ones at every
    check, once ones until they passed); the step's hooks run before its gates at a check
    (``ran_at`` says they did). ``post-rollout`` and ``on-rollback`` hooks are told once
    (``on-rollback`` only when traffic had moved).
    """
    point = HOOK_POINT.get(r.phase)
    if point is None or not r.spec.hooks:
        return None
    if point == "on-rollback" and not r.started:
        return None
    if point == "step" and r.hooks.ran_at is not None and r.hooks.ran_at == r.next_check_at:
        return None
    names = tuple(
        h.name
        for h in _hooks_of(r, point)
        if h.name not in r.hooks.passed or (point == "step" and h.every_interval)
    )
    return RunHooks(point, names) if names else None


def _hooks_for_next_step(r: Rollout) -> Any:
    step_hooks = {h.name for h in r.spec.hooks if h.point == "step"}
    passed = tuple(n for n in r.hooks.passed if n not in step_hooks)
    return r.hooks.model_copy(update={"passed": passed, "ran_at": None})


def _hook_event(
    r: Rollout, point: str, res: GateResult, counted: bool, at_step: tuple[int, float]
) -> NewEvent:
    kind = next((h.kind for h in r.spec.hooks if h.name == res.gate), "?")
    note = "" if counted else " (not counted: the rollout moved on)"
    return _ev(
        K.HOOK_ANSWERED,
        f"hook {res.explanation} ({kind} at {point}){note}",
        at_step=at_step,
        hook=res.gate,
        hook_kind=kind,
        point=point,
        counted=counted,
        result=res.to_data(),
    )


def _hooks_answered(r: Rollout, e: HooksAnswered, now: datetime) -> Transition:
    """Fold in hook answers: at a gate point counted as metric verdicts are, against the
    same limits (failure_limit, consecutive_error_limit as errors in a row, inconclusive);
    at post-rollout and on-rollback recorded only."""
    at_step = (r.step + 1, r.weight)
    current = HOOK_POINT.get(r.phase) == e.point and (e.point != "step" or e.step == r.step)
    if not current:
        events = [_hook_event(r, e.point, res, False, at_step) for res in e.results]
        return Transition(r, events, changed=False)
    events = [_hook_event(r, e.point, res, True, at_step) for res in e.results]
    answered = {res.gate for res in e.results}
    passed = [n for n in r.hooks.passed if n not in answered]
    if e.point in ("post-rollout", "on-rollback"):  # told: never acted on
        passed += sorted(answered)
        hooks = r.hooks.model_copy(update={"passed": tuple(passed)})
        return Transition(r.model_copy(update={"hooks": hooks}), events)

    a = r.spec.analysis
    verdicts = {res.verdict for res in e.results}
    failed = Verdict.FAIL in verdicts
    errored = Verdict.ERROR in verdicts
    inconclusive = Verdict.INCONCLUSIVE in verdicts
    baking = e.point == "step"
    counts_inconclusive = inconclusive and (not baking or r.bake_remaining(now) <= 0)
    c = r.counters.model_copy(
        update={
            "failures": r.counters.failures + failed,
            "inconclusive": r.counters.inconclusive + counts_inconclusive,
        }
    )
    errors = r.hooks.errors + 1 if errored else 0
    inconclusive_over = counts_inconclusive and c.inconclusive > a.inconclusive_limit
    accepted = {Verdict.PASS} | (
        {Verdict.INCONCLUSIVE} if inconclusive_over and a.on_inconclusive == "continue" else set()
    )
    passed += [res.gate for res in e.results if res.verdict in accepted]
    hooks = r.hooks.model_copy(update={"passed": tuple(passed), "errors": errors})
    r = r.model_copy(update={"counters": c, "hooks": hooks})

    def worst(v: Verdict) -> str:
        return _summary([res for res in e.results if res.verdict == v])

    stop: tuple[str, str, RollbackCause | None, PauseCause | None] | None = None
    if failed and c.failures > a.failure_limit:
        reason = (
            f"{c.failures} failed evaluation(s), more than failure_limit {a.failure_limit}: "
            f"{worst(Verdict.FAIL)}"
        )
        pause = PauseCause.GATE_FAILED if a.on_failure == "pause" else None
        stop = ("FAIL", reason, RollbackCause.GATE_FAILED, pause)
    elif errored and errors > a.consecutive_error_limit:
        reason = (
            f"{errors} hook runs in a row without an answer, more than "
            f"consecutive_error_limit {a.consecutive_error_limit}: {worst(Verdict.ERROR)}"
        )
        stop = ("ERROR", reason, RollbackCause.PROVIDER_ERRORS, None)
    elif inconclusive_over and a.on_inconclusive != "continue":
        reason = (
            f"{c.inconclusive} inconclusive evaluation(s), more than inconclusive_limit "
            f"{a.inconclusive_limit}: {worst(Verdict.INCONCLUSIVE)}"
        )
        pause = PauseCause.INCONCLUSIVE if a.on_inconclusive == "pause" else None
        stop = ("INCONCLUSIVE", reason, RollbackCause.INCONCLUSIVE, pause)
    if stop is not None:
        verdict, reason, cause, pause = stop
        if pause is not None:
            reason += "; resume to ask again, promote to move on, abort to roll back"
            return Transition(
                _pause(r, now, pause, reason, events, verdict=verdict, point=e.point), events
            )
        if e.point == "pre-rollout":  # nothing moved: nothing to roll back
            reason = f"pre-rollout hook failed, nothing was changed: {reason}"
            r = r.model_copy(update={"phase": Phase.FAILED, "reason": reason, **NOT_RETRYING})
            events.append(_ev(K.ROLLOUT_FAILED, reason, verdict=verdict, point=e.point))
            return Transition(r, events)
        assert cause is not None
        r = _rollback(r, cause, reason, events, verdict=verdict, point=e.point)
        return Transition(r, events)

    all_passed = all(h.name in r.hooks.passed for h in _hooks_of(r, e.point))
    interval = timedelta(seconds=a.interval)
    if e.point != "step":  # pre-rollout, pre-promotion: asked again an interval later
        if all_passed:
            return Transition(r.model_copy(update=NOT_RETRYING), events)
        waiting = r.model_copy(
            update={"retry_at": now + interval, "attempts": r.attempts + 1, "failing_since": None}
        )
        return Transition(waiting, events)
    step = r.current_step
    if step.bake == 0:  # no gates at this step: its hooks alone decide it
        if all_passed:
            why = f"{step.weight:g}% reached and its hooks passed"
            return Transition(_complete_step(r, now, events, why), events)
        return Transition(r.model_copy(update={"next_check_at": now + interval}), events)
    remaining = r.bake_remaining(now)
    if r.next_check_at == r.watching_since and remaining > 0:
        # The hooks' run right after the shift: the gates' first turn comes an interval on.
        first = now + timedelta(seconds=min(a.interval, remaining))
        return Transition(r.model_copy(update={"next_check_at": first}), events)
    hooks = r.hooks.model_copy(update={"ran_at": r.next_check_at})  # the gates run next
    return Transition(r.model_copy(update={"hooks": hooks}), events)
