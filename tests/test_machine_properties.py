"""Invariants of the state machine under any sequence of results and commands.

The table tests pin each rule; these look for the sequence nobody thought of. A rollout is
driven the way the engine drives it (decide, then feed the action a random outcome), with
random commands in between, and after every input the promises to operators must hold.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

from helpers import T0, document, lambda_target, result, rollout
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.base import Verdict
from canary.events import ActionError, ErrorKind
from canary.machine import (
    Check,
    CheckResult,
    Command,
    CommandRejected,
    Done,
    Promote,
    PromoteResult,
    Rollback,
    RollbackResult,
    Shift,
    ShiftResult,
    Start,
    Started,
    Wait,
    apply,
    decide,
)
from canary.model import TERMINAL, Phase, Rollout
from config.durations import format_duration, parse_duration
from strategies.base import TrafficSplit

DOC = document(
    targets=[lambda_target("a"), lambda_target("b")],
    steps=[{"weight": 10, "bake": "2m"}, {"weight": 50, "bake": "2m"}, {"weight": 100}],
    analysis={
        "interval": "30s",
        "failure_limit": 1,
        "inconclusive_limit": 2,
        "consecutive_error_limit": 2,
        "on_inconclusive": "pause",
        "gates": [{"name": "errors", "provider": "cloudwatch", "query": "e", "max": 0.01}],
    },
)

THROTTLED = ActionError(ErrorKind.TEMPORARY, "a", "throttled", 5.0)
DENIED = ActionError(ErrorKind.PERMANENT, "a", "denied")

outcomes = st.sampled_from(["ok", "error", "drift"])
verdicts = st.sampled_from(list(Verdict))
commands = st.sampled_from(["promote", "full", "pause", "resume", "abort"])
ops = st.lists(
    st.one_of(
        st.tuples(st.just("act"), outcomes, verdicts),
        st.tuples(st.just("command"), commands, verdicts),
    ),
    max_size=80,
)


def outcome(r: Rollout, action: object, kind: str, verdict: Verdict) -> object:
    n = len(r.targets)
    match action:
        case Start():
            return Started(error=DENIED) if kind == "error" else Started(stables=("1",) * n)
        case Shift(weight=w):
            if kind == "error":
                return ShiftResult(w, (TrafficSplit(w),), error=THROTTLED)
            seen = TrafficSplit(None if kind == "drift" else w)
            return ShiftResult(w, (seen,) * n)
        case Check():
            seen = TrafficSplit(None if kind == "drift" else r.weight)
            return CheckResult((seen,) * n, (result(verdict),))
        case Promote():
            if kind == "error":
                return PromoteResult(error=DENIED if verdict == Verdict.FAIL else THROTTLED)
            return PromoteResult((TrafficSplit(100),) * n)
        case Rollback(targets=order):
            if kind == "error":
                return RollbackResult(order[1:], {order[0]: THROTTLED})
            return RollbackResult(order)
    raise AssertionError(action)


def drive(sequence: list[tuple[str, str, Verdict]]) -> list[tuple[Rollout, object]]:
    r = rollout(Phase.PENDING, DOC, started=False)
    now = T0
    history: list[tuple[Rollout, object]] = [(r, None)]
    for op, what, verdict in sequence:
        if op == "command":
            name = "promote" if what == "full" else what
            command = Command(name, "ana", full=what == "full")  # type: ignore[arg-type]
            try:
                r = apply(r, command, now).rollout
            except CommandRejected:
                continue
            history.append((r, command))
            continue
        action = decide(r, now)
        if isinstance(action, Done):
            break
        if isinstance(action, Wait):
            if action.until is None:
                continue
            now = max(now, action.until)
            action = decide(r, now)
        now += timedelta(seconds=1)
        event = outcome(r, action, what, verdict)
        r = apply(r, event, now).rollout  # type: ignore[arg-type]
        history.append((r, event))
    return history


@settings(max_examples=400, deadline=None)
@given(ops)
def test_promises_hold_under_any_sequence(sequence: list[tuple[str, str, Verdict]]) -> None:
    history = drive(sequence)
    human_promoted = False
    for (before, _), (after, cause) in itertools.pairwise(history):
        if isinstance(cause, Command) and cause.name == "promote":
            human_promoted = True
        # An ended rollout never changes again.
        if before.phase in TERMINAL:
            assert after == before
        # A rollback only ever ends rolled back.
        if before.phase in (Phase.ROLLING_BACK, Phase.ROLLBACK_FAILED):
            assert after.phase in (Phase.ROLLING_BACK, Phase.ROLLBACK_FAILED, Phase.ROLLED_BACK)
        # Rolled back means every target was read back on stable (or never touched).
        if after.phase == Phase.ROLLED_BACK and after.started and after.weight:
            raise AssertionError("rolled back with canary traffic left")
        if after.phase == Phase.ROLLED_BACK and before.phase != Phase.PENDING:
            assert all(t.restored for t in after.targets)
        assert 0 <= after.weight <= 100
        assert 0 <= after.step < len(DOC.spec.steps)
        # Only a passing evaluation or a person moves a rollout past a step with gates.
        if after.step > before.step and isinstance(cause, CheckResult):
            assert all(res.verdict == Verdict.PASS for res in cause.results)
    final = history[-1][0]
    if final.phase in (Phase.PROMOTING, Phase.SUCCEEDED) and not human_promoted:
        checks = [c for _, c in history if isinstance(c, CheckResult)]
        assert any(all(x.verdict == Verdict.PASS for x in c.results) for c in checks)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([Verdict.ERROR, Verdict.FAIL, Verdict.INCONCLUSIVE]), max_size=60))
def test_no_passing_evaluation_means_no_promotion(stream: list[Verdict]) -> None:
    sequence = [("act", "ok", v) for v in stream] + [("act", "ok", Verdict.ERROR)] * 20
    final = drive(sequence)[-1][0]
    assert final.phase not in (Phase.PROMOTING, Phase.SUCCEEDED)
    assert final.step == 0


@given(st.floats(min_value=0, max_value=10**7, allow_nan=False, allow_infinity=False))
def test_every_duration_reads_back_exactly(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds
