"""Hook points in the state machine: pure decide/apply, phase by phase, on fixed times."""

from __future__ import annotations

from typing import Any

from helpers import T0, at, lambda_target, rollout

from analysis.base import Verdict
from analysis.judges import GateResult
from canary.events import EventKind
from canary.machine import (
    Check,
    CheckResult,
    Done,
    HooksAnswered,
    Promote,
    RunHooks,
    ShiftResult,
    Start,
    Wait,
    apply,
    decide,
)
from canary.model import Phase, Rollout
from config.spec import RolloutDocument, parse_document
from strategies.base import TrafficSplit


def doc(
    hooks: list[dict[str, Any]], steps: list[dict[str, Any]] | None = None, **analysis: Any
) -> RolloutDocument:
    return parse_document(
        {
            "apiVersion": "canary/v1",
            "kind": "Rollout",
            "metadata": {"name": "checkout"},
            "spec": {
                "targets": [lambda_target()],
                "steps": steps or [{"weight": 25, "bake": "2m"}, {"weight": 100}],
                "analysis": {
                    "interval": "30s",
                    "warmup": "0s",
                    "gates": [{"name": "errors", "provider": "cloudwatch", "query": "e", "max": 1}],
                }
                | analysis,
                "hooks": hooks,
            },
        }
    )


def hook(name: str, point: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "kind": "webhook", "point": point, "url": "https://t.example/x"} | fields


def answer(name: str, verdict: Verdict) -> GateResult:
    return GateResult(
        gate=name, verdict=verdict, explanation=f"{name} said {verdict.value} → {verdict.value}"
    )


def split(weight: float) -> TrafficSplit:
    return TrafficSplit(weight, stable="1")


def shifted(r: Rollout, weight: float, now: float) -> Rollout:
    return apply(r, ShiftResult(weight, (split(weight),)), at(now)).rollout


def answered(r: Rollout, point: str, *results: GateResult, now: float) -> tuple[Rollout, list[Any]]:
    t = apply(r, HooksAnswered(point, r.step, results), at(now))
    return t.rollout, t.events


# --- pre-rollout --------------------------------------------------------------------------


def test_pre_rollout_hooks_run_before_the_start_and_a_pass_lets_it_start() -> None:
    r = rollout(Phase.PENDING, doc([hook("ready", "pre-rollout")]), started=False)
    assert decide(r, T0) == RunHooks("pre-rollout", ("ready",))
    r, events = answered(r, "pre-rollout", answer("ready", Verdict.PASS), now=0)
    assert events[0].kind == EventKind.HOOK_ANSWERED
    assert events[0].data["result"]["verdict"] == "PASS"
    assert decide(r, T0) == Start()


def test_a_pre_rollout_failure_beyond_the_limit_fails_the_rollout_with_nothing_moved() -> None:
    r = rollout(Phase.PENDING, doc([hook("ready", "pre-rollout")], failure_limit=0), started=False)
    r, events = answered(r, "pre-rollout", answer("ready", Verdict.FAIL), now=0)
    assert r.phase == Phase.FAILED
    assert r.reason is not None
    assert r.reason.startswith("pre-rollout hook failed, nothing was changed")
    assert [e.kind for e in events] == [EventKind.HOOK_ANSWERED, EventKind.ROLLOUT_FAILED]


def test_a_pre_rollout_failure_within_the_limit_is_asked_again_an_interval_later() -> None:
    r = rollout(Phase.PENDING, doc([hook("ready", "pre-rollout")]), started=False)
    r, _ = answered(r, "pre-rollout", answer("ready", Verdict.FAIL), now=0)
    assert r.phase == Phase.PENDING
    assert r.counters.failures == 1
    assert decide(r, at(10)) == Wait(at(30))
    assert decide(r, at(30)) == RunHooks("pre-rollout", ("ready",))


# --- step -----------------------------------------------------------------------------------


def test_a_step_hook_runs_right_after_the_shift_and_the_gates_an_interval_later() -> None:
    r = rollout(Phase.SHIFTING, doc([hook("smoke", "step", weight=25)]))
    r = shifted(r, 25, now=0)
    assert r.phase == Phase.BAKING
    assert decide(r, T0) == RunHooks("step", ("smoke",))
    r, _ = answered(r, "step", answer("smoke", Verdict.PASS), now=0)
    assert decide(r, T0) == Wait(at(30))
    assert decide(r, at(30)) == Check()  # once: passed, not asked again


def test_a_step_hook_runs_only_at_its_step() -> None:
    steps = [{"weight": 10, "bake": "1m"}, {"weight": 25, "bake": "1m"}, {"weight": 100}]
    r = rollout(Phase.SHIFTING, doc([hook("smoke", "step", weight=25)], steps))
    r = shifted(r, 10, now=0)
    assert decide(r, at(30)) == Check()


def test_a_failed_step_hook_holds_the_step_and_is_asked_again_until_it_passes() -> None:
    r = rollout(Phase.SHIFTING, doc([hook("smoke", "step", weight=25)], failure_limit=5))
    r = shifted(r, 25, now=0)
    r, _ = answered(r, "step", answer("smoke", Verdict.FAIL), now=0)
    for now in (30, 60, 90):  # every check: the hook first, then the gates
        assert decide(r, at(now)) == RunHooks("step", ("smoke",))
        r, _ = answered(r, "step", answer("smoke", Verdict.FAIL), now=now)
        assert decide(r, at(now)) == Check()
        r = apply(r, CheckResult((split(25),), (answer("errors", Verdict.PASS),)), at(now)).rollout
    r, _ = answered(r, "step", answer("smoke", Verdict.FAIL), now=120)
    r = apply(r, CheckResult((split(25),), (answer("errors", Verdict.PASS),)), at(120)).rollout
    assert r.phase == Phase.BAKING  # the bake is over but its hook did not pass
    assert r.step == 0
    r, _ = answered(r, "step", answer("smoke", Verdict.PASS), now=150)
    r = apply(r, CheckResult((split(25),), (answer("errors", Verdict.PASS),)), at(150)).rollout
    assert r.step == 1  # passed: the step is done
    assert r.counters.failures == 5


def test_an_every_interval_hook_runs_before_the_gates_at_every_check() -> None:
    r = rollout(Phase.SHIFTING, doc([hook("alarms", "step", run="every-interval")]))
    r = shifted(r, 25, now=0)
    r, _ = answered(r, "step", answer("alarms", Verdict.PASS), now=0)
    assert decide(r, at(30)) == RunHooks("step", ("alarms",))
    r, _ = answered(r, "step", answer("alarms", Verdict.PASS), now=30)
    assert decide(r, at(30)) == Check()


def test_a_step_without_a_bake_is_decided_by_its_hooks_alone() -> None:
    steps = [{"weight": 25, "bake": "0s"}, {"weight": 100}]
    r = rollout(Phase.SHIFTING, doc([hook("smoke", "step", weight=25)], steps))
    r = shifted(r, 25, now=0)
    assert decide(r, T0) == RunHooks("step", ("smoke",))
    r, _ = answered(r, "step", answer("smoke", Verdict.PASS), now=0)
    assert r.phase == Phase.SHIFTING
    assert r.step == 1


def test_a_step_hook_failure_beyond_the_limit_rolls_back_with_the_answer() -> None:
    r = rollout(Phase.SHIFTING, doc([hook("smoke", "step", weight=25)], failure_limit=0))
    r = shifted(r, 25, now=0)
    r, events = answered(r, "step", answer("smoke", Verdict.FAIL), now=0)
    assert r.phase == Phase.ROLLING_BACK
    assert r.cause is not None
    assert r.cause.value == "gate_failed"
    started = events[-1]
    assert started.kind == EventKind.ROLLBACK_STARTED
    assert started.data["point"] == "step"
    assert "smoke said FAIL" in started.data["reason"]


def test_on_failure_pause_pauses_on_a_hook_failure() -> None:
    d = doc([hook("smoke", "step", weight=25)], failure_limit=0, on_failure="pause")
    r = shifted(rollout(Phase.SHIFTING, d), 25, now=0)
    r, _ = answered(r, "step", answer("smoke", Verdict.FAIL), now=0)
    assert r.phase == Phase.PAUSED
    assert r.paused_cause is not None
    assert r.paused_cause.value == "gate_failed"


def test_hook_errors_in_a_row_beyond_the_limit_roll_back_as_provider_errors() -> None:
    d = doc([hook("smoke", "step", weight=25)], consecutive_error_limit=1)
    r = shifted(rollout(Phase.SHIFTING, d), 25, now=0)
    r, _ = answered(r, "step", answer("smoke", Verdict.ERROR), now=0)
    assert r.phase == Phase.BAKING
    r, _ = answered(r, "step", answer("smoke", Verdict.ERROR), now=30)
    assert r.phase == Phase.ROLLING_BACK
    assert r.cause is not None
    assert r.cause.value == "provider_errors"
    assert r.counters.failures == 0  # an ERROR is never a FAIL


def test_an_answer_for_a_step_the_rollout_has_left_is_recorded_not_counted() -> None:
    steps = [{"weight": 25, "bake": "1m"}, {"weight": 50, "bake": "1m"}, {"weight": 100}]
    r = shifted(
        rollout(Phase.SHIFTING, doc([hook("smoke", "step")], steps, failure_limit=0)), 25, 0
    )
    t = apply(r, HooksAnswered("step", r.step + 1, (answer("smoke", Verdict.FAIL),)), at(0))
    assert not t.changed
    assert t.rollout.phase == Phase.BAKING
    assert t.events[0].data["counted"] is False


# --- pre-promotion, post-rollout, on-rollback ---------------------------------------------


def test_pre_promotion_hooks_gate_the_promotion() -> None:
    d = doc([hook("final", "pre-promotion")])
    r = rollout(Phase.PROMOTING, d, step=1, weight=100)
    assert decide(r, T0) == RunHooks("pre-promotion", ("final",))
    r, _ = answered(r, "pre-promotion", answer("final", Verdict.PASS), now=0)
    assert decide(r, T0) == Promote()


def test_post_rollout_hooks_are_told_once_after_the_promotion() -> None:
    r = rollout(Phase.SUCCEEDED, doc([hook("done", "post-rollout")]), step=1, weight=100)
    assert decide(r, T0) == RunHooks("post-rollout", ("done",))
    r, events = answered(r, "post-rollout", answer("done", Verdict.ERROR), now=0)
    assert r.phase == Phase.SUCCEEDED
    assert events[0].data["result"]["verdict"] == "ERROR"
    assert decide(r, T0) == Done()


def test_on_rollback_hooks_are_told_only_when_traffic_had_moved() -> None:
    d = doc([hook("oncall", "on-rollback")])
    assert decide(rollout(Phase.ROLLED_BACK, d), T0) == RunHooks("on-rollback", ("oncall",))
    assert decide(rollout(Phase.ROLLED_BACK, d, started=False), T0) == Done()


# --- what others make of a hook's answer --------------------------------------------------


def test_a_failed_hook_answer_is_a_slack_reply_and_a_passing_one_is_not() -> None:
    from canary.model import Event
    from canary.slack.render import reply

    r = shifted(rollout(Phase.SHIFTING, doc([hook("smoke", "step", weight=25)])), 25, now=0)
    _, failed = answered(r, "step", answer("smoke", Verdict.FAIL), now=0)
    _, passed = answered(r, "step", answer("smoke", Verdict.PASS), now=0)

    def stored(e: Any) -> Event:
        return Event(
            rollout_id="r1",
            seq=1,
            at=T0,
            kind=e.kind,
            step=1,
            weight=25,
            message=e.message,
            data=e.data,
        )

    message = reply(stored(failed[0]))
    assert message is not None
    assert "Hook smoke said FAIL" in message.text
    assert reply(stored(passed[0])) is None


def test_hook_verdicts_are_counted_in_the_gate_verdict_metric() -> None:
    from canary.metrics import Metrics
    from canary.model import Event

    r = shifted(rollout(Phase.SHIFTING, doc([hook("smoke", "step", weight=25)])), 25, now=0)
    r2, events = answered(r, "step", answer("smoke", Verdict.FAIL), now=0)
    metrics = Metrics()
    stored = [
        Event(
            rollout_id="r1",
            seq=1,
            at=T0,
            kind=e.kind,
            step=1,
            weight=25,
            message=e.message,
            data=e.data,
        )
        for e in events
    ]
    metrics.saved(r2, stored)
    text = metrics.render().decode()
    assert 'gate="smoke",verdict="FAIL"' in text
