"""What the engine does with each class of backend error, on virtual time.

A strategy's error says what to do (strategies/base.py): a temporary one is tried again
after its delay until the retry budget is spent, a permanent one acts at once, and a
conflict that shows someone else's split is drift. Each test runs whole rollouts through
the real engine, machine and store against in-memory targets with injected faults, and
asserts what an operator would see: the outcome, the traffic, and the recorded attempts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from helpers import T0, at, document

from analysis.base import Measurement, MetricQuery
from analysis.scripted import ScriptedProvider
from canary.clock import VirtualClock
from canary.engine import Engine, EngineOptions
from canary.events import EventKind, PauseCause, RollbackCause
from canary.model import Event, Phase, Rollout
from canary.simulate import Scheduled, drive
from canary.store import MemoryStore
from config.settings import load_settings
from config.spec import RolloutDocument
from strategies.base import PermanentError, TemporaryError
from strategies.memory import MemoryBackend, MemoryFleet

RETRIES = {
    EventKind.PREFLIGHT_FAILED,
    EventKind.TRAFFIC_SHIFT_FAILED,
    EventKind.PROMOTION_FAILED,
    EventKind.ROLLBACK_FAILED,
}


def healthy(q: MetricQuery) -> Measurement:
    return Measurement(0.002, 1000)


class Rig:
    def __init__(self, options: EngineOptions | None = None) -> None:
        self.clock = VirtualClock(T0)
        self.store = MemoryStore()
        self.fleet = MemoryFleet(stable="1")
        provider = ScriptedProvider(healthy)
        self.engine = Engine(
            self.store,
            self.clock,
            self.fleet.factory,
            {"cloudwatch": provider},
            options=options or EngineOptions(step_retry=1.0),
        )

    def backend(self, doc: RolloutDocument) -> MemoryBackend:
        return self.fleet.backend(doc.spec.targets[0].key())

    async def run(
        self, doc: RolloutDocument, scheduled: list[Scheduled] | None = None
    ) -> tuple[Rollout, list[Event]]:
        await self.engine.start()
        try:
            r = await self.engine.submit(doc, actor="ci")
            await drive(self.engine, self.clock, scheduled=scheduled)
        finally:
            await self.engine.stop()
        return await self.store.get(r.id), await self.store.events(r.id)


def spec(**kw: Any) -> RolloutDocument:
    kw.setdefault(
        "analysis",
        {
            "interval": "10s",
            "gates": [{"name": "errors", "provider": "cloudwatch", "query": "e", "max": 0.01}],
        },
    )
    return document(**kw)


def of(kinds: set[EventKind], events: list[Event]) -> list[Event]:
    return [e for e in events if e.kind in kinds]


def at_time(when: datetime, action: Any) -> Scheduled:
    async def run() -> None:
        action()

    return (when, run)


async def test_a_backend_throttled_for_two_minutes_still_ends_succeeded() -> None:
    rig = Rig()
    steps = [{"weight": w, "bake": "20s"} for w in (10, 20, 30, 40, 50)] + [{"weight": 100}]
    doc = spec(steps=steps)
    backend = rig.backend(doc)
    r, events = await rig.run(
        doc,
        scheduled=[
            at_time(at(1), lambda: backend.throttle(0.3, seed=5)),  # 30% of calls fail
            at_time(at(121), lambda: backend.throttle(0)),  # for two minutes
        ],
    )
    assert r.phase == Phase.SUCCEEDED
    assert (backend.primary, backend.extra) == ("2", None)
    retries = of(RETRIES, events)
    writes = [op for op in backend.throttled if op in ("shift", "promote")]
    assert set(writes) == {"shift", "promote"}, "the seed throttles both kinds of write"
    assert len(retries) == len(writes), "each throttled write is one recorded retry"
    key = doc.spec.targets[0].key()
    for event in retries:
        assert event.data["error"] == {
            "kind": "temporary",
            "target": key,
            "message": "ThrottlingException: Rate exceeded",
            "delay": 1.0,
        }
        assert event.data["retry_in"] >= 5.0
        assert at(1) <= event.at <= at(121)
    # A throttled read during a bake is an unmeasured gate, never a retry or a rollback.
    unreadable = [
        res
        for e in of({EventKind.ANALYSIS_EVALUATED}, events)
        for res in e.data["results"]
        if res["gate"] == "traffic"
    ]
    assert len(unreadable) == backend.throttled.count("observe")
    assert not of({EventKind.ROLLBACK_STARTED}, events)


async def test_a_throttled_preflight_is_tried_again() -> None:
    rig = Rig()
    doc = spec(steps=[{"weight": 100}])
    rig.backend(doc).fail("validate", TemporaryError("ThrottlingException", delay=2), times=2)
    r, events = await rig.run(doc)
    assert r.phase == Phase.SUCCEEDED
    assert [e.data["attempt"] for e in of({EventKind.PREFLIGHT_FAILED}, events)] == [1, 2]


async def test_a_permanent_refusal_rolls_back_at_once() -> None:
    rig = Rig()
    doc = spec()
    backend = rig.backend(doc)
    backend.fail("shift", PermanentError("AccessDenied: lambda:UpdateAlias"))
    r, events = await rig.run(doc)
    assert r.phase == Phase.ROLLED_BACK
    assert r.cause == RollbackCause.SHIFT_FAILED
    assert backend.calls.count("shift") == 1, "never retried"
    assert not of(RETRIES, events)
    started = of({EventKind.ROLLBACK_STARTED}, events)[0]
    assert started.at == T0, "at once: no time passed"
    assert started.data["error"]["kind"] == "permanent"
    assert (backend.primary, backend.extra) == ("1", None)


async def test_a_second_conflict_showing_a_foreign_split_pauses_as_drift() -> None:
    rig = Rig()
    doc = spec()
    backend = rig.backend(doc)
    backend.conflict("shift")  # someone bumped the revision: our own split, write again
    backend.conflict("shift", by_hand=("1", "3", 30.0))  # now someone routed 30% to v3
    r, events = await rig.run(doc)
    assert r.phase == Phase.PAUSED
    assert r.paused_cause == PauseCause.DRIFT
    assert not of({EventKind.ROLLBACK_STARTED}, events), "drift is never a rollback"
    paused = of({EventKind.ROLLOUT_PAUSED}, events)[0]
    assert paused.data["cause"] == "drift"
    assert paused.data["observed"] is None, "a third version"
    assert paused.data["detail"] == "1 + 3 at 30%"
    assert (backend.extra, backend.extra_weight) == ("3", 30.0), "canary never fights a human"


async def test_conflicts_over_our_own_split_are_retried_not_rolled_back() -> None:
    rig = Rig()
    doc = spec(steps=[{"weight": 100}])
    backend = rig.backend(doc)
    for _ in range(3):  # two on the first attempt, one on the second
        backend.conflict("shift")
    r, events = await rig.run(doc)
    assert r.phase == Phase.SUCCEEDED
    (retry,) = of({EventKind.TRAFFIC_SHIFT_FAILED}, events)
    assert retry.data["error"]["kind"] == "conflict"


@pytest.mark.parametrize("budget", [60.0, 120.0])
async def test_a_throttle_that_outlasts_the_budget_is_a_failed_shift(budget: float) -> None:
    rig = Rig(EngineOptions(step_retry=1.0, action_retry_budget=budget))
    doc = spec()
    backend = rig.backend(doc)
    backend.fail("shift", TemporaryError("ThrottlingException"), times=1000)
    r, events = await rig.run(doc)
    assert r.phase == Phase.ROLLED_BACK
    assert r.cause == RollbackCause.SHIFT_FAILED
    started = of({EventKind.ROLLBACK_STARTED}, events)[0]
    assert started.at == at(budget), "the last attempt lands on the budget's end"
    retries = of({EventKind.TRAFFIC_SHIFT_FAILED}, events)
    assert backend.calls.count("shift") == len(retries) + 1
    assert "still failing after" in (r.reason or "")
    assert (backend.primary, backend.extra) == ("1", None)


async def test_a_promotion_throttled_past_the_budget_rolls_back() -> None:
    rig = Rig(EngineOptions(step_retry=1.0, action_retry_budget=30))
    doc = spec(steps=[{"weight": 100}])
    rig.backend(doc).fail("promote", TemporaryError("ThrottlingException"), times=1000)
    r, events = await rig.run(doc)
    assert r.phase == Phase.ROLLED_BACK
    assert r.cause == RollbackCause.PROMOTION_FAILED
    assert len(of({EventKind.PROMOTION_FAILED}, events)) == 3, "at 0, 5 and 15 s; gave up at 30"


async def test_a_rollback_outlasts_any_budget() -> None:
    rig = Rig(EngineOptions(step_retry=1.0, action_retry_budget=10))
    doc = spec()
    backend = rig.backend(doc)
    backend.fail("shift", PermanentError("AccessDenied"))
    backend.fail("rollback", TemporaryError("ThrottlingException"), times=5)
    r, events = await rig.run(doc)
    assert r.phase == Phase.ROLLED_BACK
    assert len(of({EventKind.ROLLBACK_FAILED}, events)) == 5
    assert (backend.primary, backend.extra) == ("1", None)


def test_the_budget_is_a_daemon_setting(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CANARY_ALLOW_ANONYMOUS", "true")
    assert load_settings().action_retry_budget == 300
    clean_env.setenv("CANARY_ACTION_RETRY_BUDGET", "90")
    assert load_settings().action_retry_budget == 90
    for bad in ("nan", "-1", "inf"):
        clean_env.setenv("CANARY_ACTION_RETRY_BUDGET", bad)
        with pytest.raises(Exception, match="CANARY_ACTION_RETRY_BUDGET"):
            load_settings()
