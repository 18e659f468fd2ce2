"""The state machine, phase by phase: every command in every phase, every verdict.

These are the rules people rely on when they press a button at 3 a.m., so each case
asserts where the rollout ends up, not how it got there.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from helpers import GATES, T0, at, document, lambda_target, result, rollout

from analysis.base import Verdict
from analysis.judges import GateResult
from canary.events import ActionError, ErrorKind, EventKind, PauseCause, RollbackCause
from canary.machine import (
    Check,
    CheckResult,
    Command,
    CommandRejected,
    Done,
    Promote,
    PromoteResult,
    Restarted,
    RetryPolicy,
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
from canary.model import Phase
from strategies.base import TrafficSplit

P = Phase
KEY = "lambda-alias/default-region/checkout/live"


def temporary(message: str = "ThrottlingException", delay: float = 5.0) -> ActionError:
    return ActionError(ErrorKind.TEMPORARY, KEY, message, delay)


def permanent(message: str = "AccessDenied: lambda:UpdateAlias") -> ActionError:
    return ActionError(ErrorKind.PERMANENT, KEY, message)


REJECT = "reject"
SAME = "unchanged"

# phase -> expected outcome of promote, promote --full, pause, resume, abort
TABLE: dict[Phase, tuple[object, object, object, object, object]] = {
    P.PENDING: (REJECT, REJECT, P.PAUSED, REJECT, P.ROLLED_BACK),
    P.SHIFTING: (P.SHIFTING, P.PROMOTING, P.PAUSED, REJECT, P.ROLLING_BACK),
    P.BAKING: (P.SHIFTING, P.PROMOTING, P.PAUSED, REJECT, P.ROLLING_BACK),
    P.AWAITING_APPROVAL: (P.SHIFTING, P.PROMOTING, P.PAUSED, REJECT, P.ROLLING_BACK),
    P.PAUSED: (P.SHIFTING, P.PROMOTING, SAME, P.SHIFTING, P.ROLLING_BACK),
    P.PROMOTING: (SAME, SAME, REJECT, REJECT, P.ROLLING_BACK),
    P.ROLLING_BACK: (REJECT, REJECT, REJECT, REJECT, SAME),
    P.ROLLBACK_FAILED: (REJECT, REJECT, REJECT, REJECT, SAME),
    P.SUCCEEDED: (REJECT,) * 5,
    P.ROLLED_BACK: (REJECT,) * 5,
    P.FAILED: (REJECT,) * 5,
}
COMMANDS = [
    Command("promote", "ana"),
    Command("promote", "ana", full=True),
    Command("pause", "ana"),
    Command("resume", "ana"),
    Command("abort", "ana", reason="bad smell"),
]


def test_table_covers_every_phase() -> None:
    assert set(TABLE) == set(Phase)


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize(
    "index", range(len(COMMANDS)), ids=["promote", "full", "pause", "resume", "abort"]
)
def test_every_command_in_every_phase(phase: Phase, index: int) -> None:
    command = COMMANDS[index]
    expected = TABLE[phase][index]
    before = rollout(phase, started=phase != P.PENDING)
    if expected == REJECT:
        with pytest.raises(CommandRejected) as info:
            apply(before, command, at(60))
        assert before.id in str(info.value)
        assert phase.value in str(info.value)
        return
    t = apply(before, command, at(60))
    if expected == SAME:
        assert not t.changed
        assert t.rollout == before
        assert t.events == []
        return
    assert t.rollout.phase == expected
    assert t.events, "a command that changes a rollout is recorded"
    assert t.events[0].actor == "ana"
    assert t.events[0].kind == f"command.{command.name}"


def test_promote_advances_one_step() -> None:
    t = apply(rollout(P.BAKING), Command("promote", "ana"), at(60))
    assert (t.rollout.phase, t.rollout.step) == (P.SHIFTING, 1)
    assert "skipping 4m of bake" in " ".join(e.message for e in t.events)
    assert decide(t.rollout, at(60)) == Shift(25)


def test_promote_on_last_step_promotes() -> None:
    r = rollout(P.AWAITING_APPROVAL, step=3, weight=100)
    t = apply(r, Command("promote", "ana"), at(60))
    assert t.rollout.phase == P.PROMOTING
    assert decide(t.rollout, at(60)) == Promote()


def test_abort_records_who_and_why() -> None:
    t = apply(rollout(P.BAKING), Command("abort", "ana", reason="bad smell"), at(60))
    assert t.rollout.reason == "aborted by ana: bad smell"
    assert decide(t.rollout, at(60)) == Rollback((0,))


def test_abort_while_rolling_back_changes_nothing() -> None:
    for phase in (P.ROLLING_BACK, P.ROLLBACK_FAILED):
        r = rollout(phase, reason="gate failed", attempts=2, retry_at=at(90))
        t = apply(r, Command("abort", "bob"), at(60))
        assert t.rollout == r
        assert not t.changed


# ---------------------------------------------------------------- start and shift


def test_start_records_stable_versions_and_shifts_to_first_step() -> None:
    r = rollout(P.PENDING, started=False)
    assert decide(r, T0) == Start()
    t = apply(r, Started(stables=("7",)), T0)
    assert t.rollout.phase == P.SHIFTING
    assert t.rollout.targets[0].stable == "7"
    assert decide(t.rollout, T0) == Shift(10)


def test_failed_preflight_ends_without_touching_traffic() -> None:
    t = apply(rollout(P.PENDING, started=False), Started(error=permanent("no such alias")), T0)
    assert t.rollout.phase == P.FAILED
    assert "nothing was changed" in (t.rollout.reason or "")
    assert decide(t.rollout, T0) == Done()


def test_throttled_preflight_is_tried_again_not_failed() -> None:
    r = rollout(P.PENDING, started=False)
    t = apply(r, Started(error=temporary()), T0)
    assert t.rollout.phase == P.PENDING
    assert decide(t.rollout, at(1)) == Wait(at(5))
    assert decide(t.rollout, at(5)) == Start()
    assert t.events[0].kind == EventKind.PREFLIGHT_FAILED
    assert t.events[0].data["error"]["kind"] == "temporary"


def test_verified_shift_starts_the_bake() -> None:
    r = rollout(P.SHIFTING)
    t = apply(r, ShiftResult(10, (TrafficSplit(10),)), T0)
    assert t.rollout.phase == P.BAKING
    assert t.rollout.weight == 10
    assert t.rollout.next_check_at == at(30)
    assert decide(t.rollout, at(10)) == Wait(at(30))
    assert decide(t.rollout, at(30)) == Check()


def test_shift_read_back_that_differs_is_drift() -> None:
    t = apply(rollout(P.SHIFTING), ShiftResult(10, (TrafficSplit(35),)), T0)
    assert t.rollout.phase == P.PAUSED
    assert "drift" in (t.rollout.paused_reason or "")
    assert t.rollout.paused_cause == PauseCause.DRIFT
    drift = next(e for e in t.events if e.kind == EventKind.TRAFFIC_DRIFT)
    assert drift.data["observed"] == 35
    assert drift.data["expected"] == [10]
    paused = next(e for e in t.events if e.kind == EventKind.ROLLOUT_PAUSED)
    assert paused.data["cause"] == "drift"
    assert (paused.data["target"], paused.data["observed"]) == (KEY, 35)


def test_shift_refused_permanently_rolls_back_at_once() -> None:
    t = apply(rollout(P.SHIFTING), ShiftResult(10, (), error=permanent()), T0)
    assert t.rollout.phase == P.ROLLING_BACK
    assert t.rollout.cause == RollbackCause.SHIFT_FAILED
    assert "lambda:UpdateAlias" in (t.rollout.reason or "")
    started = next(e for e in t.events if e.kind == EventKind.ROLLBACK_STARTED)
    assert started.data["cause"] == "shift_failed"
    assert started.data["error"] == {
        "kind": "permanent",
        "target": KEY,
        "message": "AccessDenied: lambda:UpdateAlias",
        "delay": 0.0,
    }


def test_throttled_shift_is_retried_after_its_delay_with_backoff() -> None:
    r = rollout(P.SHIFTING)
    t = apply(r, ShiftResult(10, (), error=temporary(delay=8)), T0)
    assert t.rollout.phase == P.SHIFTING
    assert decide(t.rollout, at(1)) == Wait(at(8)), "the backend's delay, longer than 5 s"
    failed = t.events[0]
    assert failed.kind == EventKind.TRAFFIC_SHIFT_FAILED
    assert (failed.data["attempt"], failed.data["retry_in"]) == (1, 8)
    assert failed.data["error"]["message"] == "ThrottlingException"
    t = apply(t.rollout, ShiftResult(10, (), error=temporary(delay=1)), at(8))
    assert t.rollout.retry_at == at(18), "second attempt: backoff 10 s"
    assert decide(t.rollout, at(18)) == Shift(10)
    t = apply(t.rollout, ShiftResult(10, (TrafficSplit(10),)), at(18))
    assert t.rollout.phase == P.BAKING
    assert (t.rollout.attempts, t.rollout.retry_at, t.rollout.failing_since) == (0, None, None)


def test_shift_failing_past_the_budget_counts_as_failed() -> None:
    policy = RetryPolicy(budget=60)
    r = rollout(P.SHIFTING)
    now = T0
    for _ in range(20):
        t = apply(r, ShiftResult(10, (), error=temporary()), now, policy)
        r = t.rollout
        if r.phase != P.SHIFTING:
            break
        assert r.retry_at is not None
        assert r.retry_at <= at(60), "never waits past the budget"
        now = r.retry_at
    assert r.phase == P.ROLLING_BACK
    assert now == at(60), "the last attempt lands on the budget's end"
    assert r.cause == RollbackCause.SHIFT_FAILED
    assert "still failing after" in (r.reason or "")


def test_a_conflict_over_our_own_split_is_retried() -> None:
    error = ActionError(ErrorKind.CONFLICT, KEY, "PreconditionFailed")
    t = apply(rollout(P.SHIFTING), ShiftResult(10, (), error=error), T0)
    assert (t.rollout.phase, t.rollout.attempts) == (P.SHIFTING, 1)


def test_a_command_during_a_retry_starts_the_next_action_afresh() -> None:
    r = apply(rollout(P.SHIFTING), ShiftResult(10, (), error=temporary()), T0).rollout
    r = apply(r, Command("promote", "ana"), at(1)).rollout
    assert (r.attempts, r.retry_at, r.failing_since) == (0, None, None)
    assert decide(r, at(1)) == Shift(25)


def test_shift_result_after_a_promote_does_not_start_the_old_step() -> None:
    r = apply(rollout(P.SHIFTING), Command("promote", "ana"), T0).rollout
    t = apply(r, ShiftResult(10, (TrafficSplit(10),)), T0)
    assert t.rollout.phase == P.SHIFTING
    assert decide(t.rollout, T0) == Shift(25)
    assert t.rollout.targets[0].weight == 10


def test_zero_bake_step_completes_on_arrival() -> None:
    doc = document(steps=[{"weight": 50}, {"weight": 100}])
    t = apply(rollout(P.SHIFTING, doc), ShiftResult(50, (TrafficSplit(50),)), T0)
    assert (t.rollout.phase, t.rollout.step) == (P.SHIFTING, 1)


# ---------------------------------------------------------------- gates


def check(r, verdicts, when, weight=None):  # type: ignore[no-untyped-def]
    split = TrafficSplit(r.weight if weight is None else weight)
    results = tuple(result(v, gate=f"g{i}") for i, v in enumerate(verdicts))
    return apply(r, CheckResult((split,), results), when)


def test_pass_mid_bake_keeps_baking() -> None:
    t = check(rollout(P.BAKING), [Verdict.PASS], at(30))
    assert t.rollout.phase == P.BAKING
    assert t.rollout.next_check_at == at(60)
    assert t.rollout.bake_elapsed == 30


def test_pass_at_bake_end_moves_to_next_step() -> None:
    t = check(rollout(P.BAKING), [Verdict.PASS], at(300))
    assert (t.rollout.phase, t.rollout.step) == (P.SHIFTING, 1)
    evaluated = next(e for e in t.events if e.kind == "analysis.evaluated")
    assert evaluated.data["results"][0]["verdict"] == "PASS"


def test_last_check_lands_exactly_on_bake_end() -> None:
    r = rollout(P.BAKING, bake_elapsed=0)
    t = check(r, [Verdict.PASS], at(290))
    assert t.rollout.next_check_at == at(300)


def test_failing_gate_at_first_step_rolls_back() -> None:
    doc = document(analysis=GATES | {"failure_limit": 0})
    t = check(rollout(P.BAKING, doc), [Verdict.FAIL], at(30))
    assert t.rollout.phase == P.ROLLING_BACK
    assert "failure_limit 0" in (t.rollout.reason or "")


def test_failures_within_the_limit_are_tolerated_but_never_advance() -> None:
    r = rollout(P.BAKING)  # failure_limit defaults to 1
    t = check(r, [Verdict.FAIL], at(300))
    assert t.rollout.phase == P.BAKING
    assert t.rollout.counters.failures == 1
    assert t.rollout.next_check_at == at(330), "re-evaluated one interval later, not advanced"
    t = check(t.rollout, [Verdict.FAIL], at(330))
    assert t.rollout.phase == P.ROLLING_BACK


def test_failures_count_across_steps() -> None:
    r = rollout(P.BAKING)
    r = check(r, [Verdict.FAIL], at(30)).rollout
    r = check(r, [Verdict.PASS], at(300)).rollout
    assert (r.phase, r.step, r.counters.failures) == (P.SHIFTING, 1, 1)
    r = apply(r, ShiftResult(25, (TrafficSplit(25),)), at(300)).rollout
    assert check(r, [Verdict.FAIL], at(330)).rollout.phase == P.ROLLING_BACK


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("pause", P.PAUSED), ("rollback", P.ROLLING_BACK), ("continue", P.SHIFTING)],
)
def test_inconclusive_beyond_limit_follows_policy(policy: str, expected: Phase) -> None:
    doc = document(analysis=GATES | {"inconclusive_limit": 1, "on_inconclusive": policy})
    r = check(rollout(P.BAKING, doc), [Verdict.INCONCLUSIVE], at(300)).rollout
    assert r.phase == P.BAKING
    t = check(r, [Verdict.INCONCLUSIVE], at(330))
    assert t.rollout.phase == expected
    if policy == "pause":
        assert "inconclusive_limit 1" in (t.rollout.paused_reason or "")


def test_inconclusive_during_the_bake_is_not_counted() -> None:
    """The window is still filling with this step's traffic: no verdict yet, no count."""
    doc = document(analysis=GATES | {"inconclusive_limit": 0, "on_inconclusive": "rollback"})
    r = rollout(P.BAKING, doc)
    for second in range(30, 300, 30):
        r = check(r, [Verdict.INCONCLUSIVE], at(second)).rollout
        assert (r.phase, r.counters.inconclusive) == (P.BAKING, 0)
    t = check(r, [Verdict.INCONCLUSIVE], at(300))
    assert t.rollout.phase == P.ROLLING_BACK, "at the bake's end it counts"


def test_inconclusive_within_limit_never_advances() -> None:
    t = check(rollout(P.BAKING), [Verdict.INCONCLUSIVE], at(300))
    assert t.rollout.phase == P.BAKING


def test_continue_policy_advances_on_inconclusive_after_the_limit() -> None:
    doc = document(analysis=GATES | {"inconclusive_limit": 0, "on_inconclusive": "continue"})
    t = check(rollout(P.BAKING, doc), [Verdict.INCONCLUSIVE], at(300))
    assert (t.rollout.phase, t.rollout.step) == (P.SHIFTING, 1)
    assert "inconclusive accepted" in " ".join(e.message for e in t.events)


def test_provider_errors_beyond_limit_roll_back_and_never_promote() -> None:
    doc = document(analysis=GATES | {"consecutive_error_limit": 2})
    r = rollout(P.BAKING, doc)
    for second in (300, 330):  # at and after the end of the bake: errors never advance
        r = check(r, [Verdict.ERROR], at(second)).rollout
        assert r.phase == P.BAKING
    t = check(r, [Verdict.ERROR], at(360))
    assert t.rollout.phase == P.ROLLING_BACK
    assert "consecutive_error_limit 2" in (t.rollout.reason or "")


def test_error_streak_resets_on_a_clean_evaluation() -> None:
    doc = document(analysis=GATES | {"consecutive_error_limit": 1})
    r = check(rollout(P.BAKING, doc), [Verdict.ERROR], at(30)).rollout
    r = check(r, [Verdict.PASS], at(60)).rollout
    assert r.counters.consecutive_errors == 0
    assert check(r, [Verdict.ERROR], at(90)).rollout.phase == P.BAKING


def test_each_verdict_counts_against_its_own_limit() -> None:
    t = check(rollout(P.BAKING), [Verdict.FAIL, Verdict.ERROR, Verdict.INCONCLUSIVE], at(300))
    assert t.rollout.counters.model_dump() == {
        "failures": 1,
        "inconclusive": 1,
        "consecutive_errors": 1,
    }


def test_drift_during_bake_pauses() -> None:
    t = check(rollout(P.BAKING), [Verdict.PASS], at(30), weight=0)
    assert t.rollout.phase == P.PAUSED
    assert t.rollout.bake_elapsed == 30


def test_approval_step_waits_until_promoted() -> None:
    doc = document(steps=[{"weight": 10, "bake": "1m", "approval": True}, {"weight": 100}])
    r = rollout(P.BAKING, doc)
    t = apply(r, CheckResult((TrafficSplit(10),)), at(60))
    assert t.rollout.phase == P.AWAITING_APPROVAL
    assert decide(t.rollout, at(10_000)) == Wait(None)
    t = apply(t.rollout, Command("promote", "ana"), at(10_000))
    assert (t.rollout.phase, t.rollout.step) == (P.SHIFTING, 1)


# ---------------------------------------------------------------- pause, resume, restart


def test_resume_continues_the_bake_where_it_stopped() -> None:
    r = rollout(P.BAKING)  # 5m bake at 10%
    r = check(r, [Verdict.PASS], at(60)).rollout
    r = apply(r, Command("pause", "ana"), at(120)).rollout
    assert r.bake_elapsed == 120
    r = apply(r, Command("resume", "ana"), at(3600)).rollout
    assert decide(r, at(3600)) == Shift(10), "resume re-applies the step's weight"
    r = apply(r, ShiftResult(10, (TrafficSplit(10),)), at(3600)).rollout
    assert r.bake_remaining(at(3600)) == 180
    r = check(r, [Verdict.PASS], at(3600 + 180)).rollout
    assert (r.phase, r.step) == (P.SHIFTING, 1)


def test_resume_resets_the_step_counters_but_not_failures() -> None:
    doc = document(analysis=GATES | {"inconclusive_limit": 0})
    r = check(rollout(P.BAKING, doc), [Verdict.FAIL, Verdict.INCONCLUSIVE], at(300)).rollout
    assert r.phase == P.PAUSED
    r = apply(r, Command("resume", "ana"), at(60)).rollout
    assert r.counters.model_dump() == {"failures": 1, "inconclusive": 0, "consecutive_errors": 0}


def test_restart_mid_bake_does_not_count_the_downtime() -> None:
    r = check(rollout(P.BAKING), [Verdict.PASS], at(120)).rollout
    t = apply(r, Restarted((TrafficSplit(10),)), at(4000))
    assert t.rollout.phase == P.BAKING
    assert t.rollout.bake_remaining(at(4000)) == 180
    assert "3m of bake left" in t.events[0].message


def test_restart_during_shift_accepts_old_or_new_weight() -> None:
    r = rollout(P.SHIFTING, step=1, weight=10)
    r = r.model_copy(update={"targets": (r.targets[0].model_copy(update={"weight": 10}),)})
    for seen in (10, 25):
        t = apply(r, Restarted((TrafficSplit(seen),)), at(10))
        assert t.rollout.phase == P.SHIFTING
    t = apply(r, Restarted((TrafficSplit(None, detail="3 at 100%"),)), at(10))
    assert t.rollout.phase == P.PAUSED
    assert "restart" in (t.rollout.paused_reason or "")


# ---------------------------------------------------------------- promote and rollback


def test_promotion_verified_at_100_succeeds() -> None:
    t = apply(rollout(P.PROMOTING, weight=100), PromoteResult((TrafficSplit(100),)), T0)
    assert t.rollout.phase == P.SUCCEEDED


def test_promotion_transient_error_is_retried_with_backoff() -> None:
    t = apply(rollout(P.PROMOTING), PromoteResult(error=temporary()), T0)
    assert t.rollout.phase == P.PROMOTING
    assert decide(t.rollout, at(1)) == Wait(at(5))
    t = apply(t.rollout, PromoteResult(error=temporary()), at(5))
    assert t.rollout.retry_at == at(15)
    assert [e.kind for e in t.events] == [EventKind.PROMOTION_FAILED]


def test_promotion_permanent_error_rolls_back() -> None:
    t = apply(rollout(P.PROMOTING), PromoteResult(error=permanent()), T0)
    assert t.rollout.phase == P.ROLLING_BACK
    assert t.rollout.cause == RollbackCause.PROMOTION_FAILED


def test_promotion_failing_past_the_budget_rolls_back() -> None:
    policy = RetryPolicy(budget=30)
    r = apply(rollout(P.PROMOTING), PromoteResult(error=temporary()), T0, policy).rollout
    r = apply(r, PromoteResult(error=temporary()), at(5), policy).rollout
    assert r.retry_at == at(15)
    r = apply(r, PromoteResult(error=temporary()), at(15), policy).rollout
    assert r.retry_at == at(30), "capped at the budget's end"
    t = apply(r, PromoteResult(error=temporary()), at(30), policy)
    assert t.rollout.phase == P.ROLLING_BACK
    assert t.rollout.cause == RollbackCause.PROMOTION_FAILED


def test_rollback_that_fails_is_retried_until_every_target_is_restored() -> None:
    doc = document(targets=[lambda_target("a"), lambda_target("b")], analysis=GATES)
    r = rollout(P.ROLLING_BACK, doc, reason="gate failed")
    assert decide(r, T0) == Rollback((1, 0)), "reverse order"
    t = apply(r, RollbackResult(restored=(1,), errors={0: temporary("throttled")}), T0)
    assert t.rollout.phase == P.ROLLBACK_FAILED
    assert "ROLLBACK FAILED" in t.events[0].message
    assert decide(t.rollout, at(1)) == Wait(at(5))
    assert decide(t.rollout, at(5)) == Rollback((0,)), "only the target still wrong"
    delays = []
    r = t.rollout
    for _ in range(8):
        t = apply(r, RollbackResult(errors={0: temporary("throttled")}), r.retry_at or T0)
        delays.append((t.rollout.retry_at - (r.retry_at or T0)).total_seconds())  # type: ignore[operator]
        r = t.rollout
    assert delays[:4] == [10, 20, 40, 80]
    assert max(delays) == 300, "backoff is capped"
    assert r.phase == P.ROLLBACK_FAILED, "no budget ends a rollback"
    t = apply(r, RollbackResult(restored=(0,)), r.retry_at or T0)
    assert t.rollout.phase == P.ROLLED_BACK
    assert t.rollout.reason == "gate failed"


def test_results_arriving_after_the_phase_moved_on_are_ignored() -> None:
    r = rollout(P.ROLLING_BACK)
    assert not apply(r, CheckResult((TrafficSplit(10),), (result(Verdict.PASS),)), T0).changed
    assert not apply(r, Started(stables=("1",)), T0).changed


def test_decide_waits_for_people_in_paused_and_approval() -> None:
    for phase in (P.PAUSED, P.AWAITING_APPROVAL):
        assert decide(rollout(phase), T0 + timedelta(days=9)) == Wait(None)


# ---------------------------------------------------------------- causes, as data


@pytest.mark.parametrize(
    ("limits", "verdict", "cause"),
    [
        ({"failure_limit": 0}, Verdict.FAIL, RollbackCause.GATE_FAILED),
        ({"consecutive_error_limit": 0}, Verdict.ERROR, RollbackCause.PROVIDER_ERRORS),
        (
            {"inconclusive_limit": 0, "on_inconclusive": "rollback"},
            Verdict.INCONCLUSIVE,
            RollbackCause.INCONCLUSIVE,
        ),
    ],
)
def test_a_gate_rollback_records_its_cause(
    limits: dict[str, object], verdict: Verdict, cause: RollbackCause
) -> None:
    t = check(rollout(P.BAKING, document(analysis=GATES | limits)), [verdict], at(300))
    assert t.rollout.cause == cause
    started = next(e for e in t.events if e.kind == EventKind.ROLLBACK_STARTED)
    assert started.data["cause"] == cause.value


def test_abort_records_the_aborted_cause_through_to_rolled_back() -> None:
    r = apply(rollout(P.BAKING), Command("abort", "ana"), at(60)).rollout
    assert r.cause == RollbackCause.ABORTED
    t = apply(r, RollbackResult(restored=(0,)), at(61))
    assert t.rollout.phase == P.ROLLED_BACK
    assert t.rollout.cause == RollbackCause.ABORTED
    assert t.events[0].data["cause"] == "aborted"


def test_pauses_record_their_cause() -> None:
    t = apply(rollout(P.BAKING), Command("pause", "ana", reason="lunch"), at(60))
    assert t.rollout.paused_cause == PauseCause.MANUAL
    doc = document(analysis=GATES | {"inconclusive_limit": 0})
    t = check(rollout(P.BAKING, doc), [Verdict.INCONCLUSIVE], at(300))
    assert t.rollout.paused_cause == PauseCause.INCONCLUSIVE
    assert apply(t.rollout, Command("resume", "ana"), at(400)).rollout.paused_cause is None


def test_a_command_event_carries_the_step_it_was_issued_at() -> None:
    t = apply(rollout(P.BAKING), Command("promote", "ana"), at(60))
    assert t.rollout.step == 1, "the rollout moves on to step 2"
    command = next(e for e in t.events if e.kind == EventKind.COMMAND_PROMOTE)
    assert (command.step, command.weight) == (1, 10), "issued at step 1, at 10%"
    started = next(e for e in t.events if e.kind == EventKind.STEP_STARTED)
    assert started.step is None, "the new step's event is the record's own step"


def test_a_retry_waits_in_the_record_so_a_restart_keeps_it() -> None:
    r = apply(rollout(P.SHIFTING), ShiftResult(10, (), error=temporary()), T0).rollout
    restored = type(r).model_validate_json(r.model_dump_json())
    assert decide(restored, at(2)) == Wait(at(5))
    assert restored.failing_since == T0


# ---------------------------------------------------------------- on_failure, dry_run


def test_on_failure_pause_holds_a_failed_rollout_for_a_person() -> None:
    doc = document(analysis=GATES | {"failure_limit": 0, "on_failure": "pause"})
    t = check(rollout(P.BAKING, doc), [Verdict.FAIL], at(30))
    assert t.rollout.phase == P.PAUSED, "paused, not rolled back"
    assert t.rollout.paused_cause == PauseCause.GATE_FAILED
    assert "failure_limit 0" in (t.rollout.paused_reason or "")
    paused = next(e for e in t.events if e.kind == "rollout.paused")
    assert (paused.data["cause"], paused.data["verdict"]) == ("gate_failed", "FAIL")
    assert not any(e.kind == "rollback.started" for e in t.events)
    resumed = apply(t.rollout, Command("resume", "ana"), at(60)).rollout
    resumed = apply(resumed, ShiftResult(10, (TrafficSplit(10),)), at(60)).rollout
    again = check(resumed, [Verdict.FAIL], at(90))
    assert again.rollout.phase == P.PAUSED, "each further failure pauses again"


def test_a_dry_run_gate_is_recorded_and_shown_but_never_counted() -> None:
    gates = [
        {"name": "g0", "provider": "cloudwatch", "query": "errors", "max": 0.01},
        {"name": "g1", "provider": "cloudwatch", "query": "p99", "max": 1, "dry_run": True},
    ]
    doc = document(analysis=GATES | {"failure_limit": 0, "gates": gates})
    r = check(rollout(P.BAKING, doc), [Verdict.PASS, Verdict.FAIL], at(30)).rollout
    assert r.phase == P.BAKING, "a failing dry-run gate does not roll back"
    assert r.counters.failures == 0
    t = check(r, [Verdict.PASS, Verdict.ERROR], at(300))
    assert (t.rollout.phase, t.rollout.step) == (P.SHIFTING, 1), "nor block the step"
    evaluated = next(e for e in t.events if e.kind == "analysis.evaluated")
    assert evaluated.data["results"][1]["dry_run"] is True
    assert "dry_run" not in evaluated.data["results"][0]
    assert "g1 ERROR (dry run: not counted)" in evaluated.message
    failing = check(rollout(P.BAKING, doc), [Verdict.FAIL, Verdict.PASS], at(30))
    assert failing.rollout.phase == P.ROLLING_BACK, "the counted gate still decides"


def test_warm_up_evaluations_are_recorded_but_not_counted() -> None:
    doc = document(analysis=GATES | {"failure_limit": 0, "warmup": "1m"})
    t = check(rollout(P.BAKING, doc), [Verdict.FAIL], at(30))
    assert t.rollout.phase == P.BAKING, "a FAIL 30s after the shift is warm-up"
    assert t.rollout.counters.failures == 0
    evaluated = next(e for e in t.events if e.kind == "analysis.evaluated")
    assert "(warm-up, 30s left: not counted)" in evaluated.message
    assert evaluated.data["warmup"] == {"warmup": 60.0, "remaining": 30.0}
    assert evaluated.data["results"][0]["verdict"] == "FAIL"
    assert t.rollout.next_check_at == at(60)
    t = check(t.rollout, [Verdict.FAIL], at(60))
    assert t.rollout.phase == P.ROLLING_BACK, "counted from the end of the warm-up"


def test_warm_up_never_hides_the_evaluation_that_ends_a_bake() -> None:
    steps = [{"weight": 10, "bake": "30s"}, {"weight": 100}]
    doc = document(steps=steps, analysis=GATES | {"failure_limit": 0, "warmup": "5m"})
    t = check(rollout(P.BAKING, doc), [Verdict.FAIL], at(30))
    assert t.rollout.phase == P.ROLLING_BACK


# ---------------------------------------------------------------- max_bake


def starved_check(r, when):  # type: ignore[no-untyped-def]
    few = GateResult(
        gate="errors",
        verdict=Verdict.INCONCLUSIVE,
        explanation="errors 0 rests on 61 samples < min_samples 200 → INCONCLUSIVE",
        value=0.0,
        samples=61,
        starved=True,
    )
    return apply(r, CheckResult((TrafficSplit(r.weight),), (few,)), when)


def test_a_bake_extends_while_the_gates_lack_samples_then_moves_on() -> None:
    steps = [{"weight": 10, "bake": "5m", "max_bake": "15m"}, {"weight": 100}]
    doc = document(steps=steps, analysis=GATES | {"inconclusive_limit": 0})
    t = starved_check(rollout(P.BAKING, doc), at(300))
    assert t.rollout.phase == P.BAKING, "extended, not paused at the first inconclusive look"
    assert t.rollout.counters.inconclusive == 0
    extended = next(e for e in t.events if e.kind == "bake.extended")
    assert extended.data["max_bake"] == 900
    assert extended.data["watched"] == 300
    assert extended.data["gates"] == [{"gate": "errors", "samples": 61}]
    assert "5m of max_bake 15m used" in extended.message
    t = check(t.rollout, [Verdict.PASS], at(330))
    assert (t.rollout.phase, t.rollout.step) == (P.SHIFTING, 1), "promoted once judged"


def test_after_max_bake_on_inconclusive_applies_at_once() -> None:
    steps = [{"weight": 10, "bake": "5m"}, {"weight": 100}]
    analysis = GATES | {"max_bake": "6m", "inconclusive_limit": 5}
    r = starved_check(rollout(P.BAKING, document(steps=steps, analysis=analysis)), at(300))
    assert r.rollout.phase == P.BAKING
    t = starved_check(r.rollout, at(360))
    assert t.rollout.phase == P.PAUSED
    assert "still too few samples after max_bake 6m at 10%" in (t.rollout.paused_reason or "")
    assert not any(e.kind == "bake.extended" for e in t.events)


def test_without_max_bake_or_with_a_failure_nothing_is_extended() -> None:
    steps = [{"weight": 10, "bake": "5m"}, {"weight": 100}]
    doc = document(steps=steps, analysis=GATES | {"inconclusive_limit": 0})
    assert starved_check(rollout(P.BAKING, doc), at(300)).rollout.phase == P.PAUSED
    doc = document(
        steps=[{"weight": 10, "bake": "5m", "max_bake": "1h"}, {"weight": 100}],
        analysis=GATES | {"inconclusive_limit": 0},
    )
    t = check(rollout(P.BAKING, doc), [Verdict.INCONCLUSIVE], at(300))
    assert t.rollout.phase == P.PAUSED, "inconclusive for another reason than samples"
