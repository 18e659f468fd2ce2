"""The engine on virtual time, with the in-memory strategy and scripted metrics.

Each test runs whole rollouts the way the daemon does (tasks, store, strategies, gates) and
asserts what an operator would see: where the traffic ends, the phase, and the record.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import T0, at, document, lambda_target

from analysis.base import Measurement, MetricQuery, ProviderError
from analysis.scripted import ScriptedProvider
from canary.clock import VirtualClock
from canary.engine import Engine, EngineOptions
from canary.events import EventKind
from canary.machine import Command, CommandRejected
from canary.model import Event, Phase, Rollout
from canary.simulate import drive
from canary.store import open_store
from canary.store.base import Store, TargetBusy
from config.spec import RolloutDocument
from strategies.base import PermanentError, TemporaryError
from strategies.memory import MemoryFleet

Script = Callable[[MetricQuery], Measurement | ProviderError]

ANALYSIS = {
    "interval": "30s",
    "failure_limit": 1,
    "gates": [
        {"name": "error-rate", "provider": "cloudwatch", "query": "errors", "max": 0.01},
    ],
}


def healthy(q: MetricQuery) -> Measurement:
    return Measurement(0.002, 1000)


def spike_from(weight: float) -> Script:
    def script(q: MetricQuery) -> Measurement:
        return Measurement(0.05 if q.weight >= weight else 0.002, 1000)

    return script


def spec(**kw: Any) -> RolloutDocument:
    kw.setdefault("analysis", ANALYSIS)
    return document(**kw)


class Rig:
    """An engine on a virtual clock over a store, a fleet of in-memory targets, a script."""

    def __init__(self, store: Store, script: Script = healthy, fleet: MemoryFleet | None = None):
        self.clock = VirtualClock(T0)
        self.store = store
        self.fleet = fleet or MemoryFleet(stable="1")
        self.provider = ScriptedProvider(script)
        self.engine = self.new_engine()

    def new_engine(self) -> Engine:
        return Engine(
            self.store,
            self.clock,
            self.fleet.factory,
            {"cloudwatch": self.provider, "prometheus": self.provider},
            options=EngineOptions(step_retry=1.0),
        )

    async def run(self, doc: RolloutDocument, **drive_kw: Any) -> Rollout:
        await self.engine.start()
        r = await self.engine.submit(doc, actor="ci")
        await drive(self.engine, self.clock, **drive_kw)
        return await self.store.get(r.id)

    async def events(self, r: Rollout) -> list[Event]:
        return await self.store.events(r.id)

    def backend(self, doc: RolloutDocument, index: int = 0):  # type: ignore[no-untyped-def]
        return self.fleet.backend(doc.spec.targets[index].key())


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/canary.db"
    s = open_store(url)
    yield s
    await s.close()


@pytest.fixture
async def rig(store: Store) -> AsyncIterator[Rig]:
    rig = Rig(store)
    yield rig
    await rig.engine.stop()


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


async def test_healthy_rollout_is_promoted_after_the_whole_plan(rig: Rig) -> None:
    doc = spec()
    r = await rig.run(doc)
    assert r.phase == Phase.SUCCEEDED
    backend = rig.backend(doc)
    assert (backend.primary, backend.extra) == ("2", None)
    assert rig.clock.now() - T0 == at(1800) - T0, "10/25/50/100 plan: 5+10+15 minutes"
    shifted = [e.data["weight"] for e in await rig.events(r) if e.kind == "traffic.shifted"]
    assert shifted == [10, 25, 50, 100]


async def test_error_spike_at_25_rolls_back_during_that_bake(store: Store) -> None:
    rig = Rig(store, spike_from(25))
    doc = spec()
    r = await rig.run(doc)
    await rig.engine.stop()
    assert r.phase == Phase.ROLLED_BACK
    assert "error-rate 0.05 > max 0.01" in (r.reason or "")
    backend = rig.backend(doc)
    assert (backend.primary, backend.extra, backend.extra_weight) == ("1", None, 0.0)
    events = await rig.events(r)
    rollback = next(e for e in events if e.kind == "rollback.started")
    assert rollback.weight == 25
    assert at(300) < rollback.at <= at(900), "within the 25% bake"
    assert "traffic.shifted" not in kinds(events[events.index(rollback) :])


async def test_intent_is_stored_before_the_backend_is_touched(rig: Rig) -> None:
    doc = spec(steps=[{"weight": 30}, {"weight": 100}])
    seen: list[str] = []
    backend = rig.backend(doc)
    original = backend._call

    async def spy(operation: str) -> None:
        if operation == "shift":
            r = (await rig.store.live())[0]
            seen.append((await rig.store.events(r.id))[-1].kind)
        await original(operation)

    backend._call = spy  # type: ignore[method-assign]
    await rig.run(doc)
    assert seen == ["traffic.shifting", "traffic.shifting"]


async def test_two_targets_move_together_and_roll_back_in_reverse(store: Store) -> None:
    rig = Rig(store, spike_from(25))
    doc = spec(targets=[lambda_target("a"), lambda_target("b")])
    a, b = rig.backend(doc, 0), rig.backend(doc, 1)
    r = await rig.run(doc)
    await rig.engine.stop()
    assert r.phase == Phase.ROLLED_BACK
    assert [c for c in a.calls if c != "observe"] == ["validate", "shift", "shift", "rollback"]
    assert [c for c in b.calls if c != "observe"] == ["validate", "shift", "shift", "rollback"]
    events = await rig.events(r)
    intent = next(e for e in events if e.kind == "rollback.calling")
    assert intent.message.index("/b/") < intent.message.index("/a/"), "b is rolled back first"


async def test_a_target_refusing_a_shift_rolls_every_target_back(store: Store) -> None:
    rig = Rig(store)
    doc = spec(targets=[lambda_target("a"), lambda_target("b")])
    rig.backend(doc, 1).fail("shift", PermanentError("AccessDenied: lambda:UpdateAlias"))
    r = await rig.run(doc)
    await rig.engine.stop()
    assert r.phase == Phase.ROLLED_BACK
    assert "lambda:UpdateAlias" in (r.reason or "")
    assert rig.backend(doc, 0).extra is None, "a had moved to 10%; it is back on stable"


async def test_a_refused_rollback_is_retried_until_restored(store: Store) -> None:
    rig = Rig(store, spike_from(10))
    doc = spec()
    backend = rig.backend(doc)
    backend.fail("rollback", TemporaryError("ThrottlingException"), times=3)
    r = await rig.run(doc)
    await rig.engine.stop()
    assert r.phase == Phase.ROLLED_BACK
    assert backend.extra is None
    failures = [e for e in await rig.events(r) if e.kind == "rollback.failed"]
    assert [e.data["attempt"] for e in failures] == [1, 2, 3]
    assert all("ThrottlingException" in e.message for e in failures)


async def test_a_person_changing_the_target_pauses_the_rollout(store: Store) -> None:
    rig = Rig(store)
    doc = spec()
    await rig.engine.start()
    r = await rig.engine.submit(doc, actor="ci")
    await drive(rig.engine, rig.clock, until=at(120))
    rig.backend(doc).set_by_hand("1", "2", 60)
    await drive(rig.engine, rig.clock, until=at(3600))
    r = await rig.store.get(r.id)
    await rig.engine.stop()
    assert r.phase == Phase.PAUSED
    assert "drift" in (r.paused_reason or "")
    assert rig.backend(doc).extra_weight == 60, "canary never fights a human"


async def test_provider_outage_rolls_back_and_never_promotes(store: Store) -> None:
    rig = Rig(store, lambda q: ProviderError("connection refused"))
    doc = spec()
    r = await rig.run(doc)
    await rig.engine.stop()
    assert r.phase == Phase.ROLLED_BACK
    assert "connection refused" in (r.reason or "")
    assert "traffic.shifted" in kinds(await rig.events(r))
    assert r.step == 0, "never left the first step"


async def test_missing_provider_is_an_error_not_a_pass(store: Store) -> None:
    rig = Rig(store)
    doc = spec(
        analysis={
            "gates": [{"name": "p95", "provider": "prometheus", "query": "x", "max": 1}],
            "consecutive_error_limit": 0,
        }
    )
    rig.engine = Engine(rig.store, rig.clock, rig.fleet.factory, {})
    r = await rig.run(doc)
    await rig.engine.stop()
    assert r.phase == Phase.ROLLED_BACK
    assert "no prometheus provider configured" in (r.reason or "")


async def test_preflight_failure_changes_nothing(store: Store) -> None:
    rig = Rig(store)
    doc = spec()
    rig.backend(doc).exists = False
    r = await rig.run(doc)
    await rig.engine.stop()
    assert r.phase == Phase.FAILED
    assert "does not exist" in (r.reason or "")
    assert rig.backend(doc).calls == ["validate"]


async def test_second_rollout_on_a_live_target_is_refused(rig: Rig) -> None:
    doc = spec()
    await rig.engine.start()
    first = await rig.engine.submit(doc, actor="ci")
    with pytest.raises(TargetBusy) as info:
        await rig.engine.submit(spec(name="other"), actor="ci")
    assert first.id in str(info.value)


async def test_approval_step_waits_for_a_promote(rig: Rig) -> None:
    doc = spec(steps=[{"weight": 20, "bake": "1m", "approval": True}, {"weight": 100}])
    r = await rig.run(doc)
    assert r.phase == Phase.AWAITING_APPROVAL
    await rig.engine.command(r.id, Command("promote", "ana"))
    await drive(rig.engine, rig.clock)
    r = await rig.store.get(r.id)
    assert r.phase == Phase.SUCCEEDED
    promote = next(e for e in await rig.events(r) if e.kind == EventKind.COMMAND_PROMOTE)
    assert promote.actor == "ana"
    assert (promote.step, promote.weight) == (1, 20), "labelled with the step it was issued at"


async def test_abort_mid_bake_restores_stable_at_once(rig: Rig) -> None:
    doc = spec()
    await rig.engine.start()
    r = await rig.engine.submit(doc, actor="ci")
    await drive(rig.engine, rig.clock, until=at(400))
    await rig.engine.command(r.id, Command("abort", "ana", reason="pager"))
    await drive(rig.engine, rig.clock, until=at(400))
    r = await rig.store.get(r.id)
    assert r.phase == Phase.ROLLED_BACK
    assert rig.clock.now() == at(400), "no waiting for the next check"
    assert rig.backend(doc).extra is None
    with pytest.raises(CommandRejected):
        await rig.engine.command(r.id, Command("resume", "ana"))


async def test_task_survives_a_flaky_store(rig: Rig) -> None:
    doc = spec(steps=[{"weight": 10, "bake": "1m"}, {"weight": 100}])
    real_get = rig.store.get
    failures = {"left": 3}

    async def flaky_get(rollout_id: str) -> Rollout:
        if failures["left"] and rig.clock.now() >= at(30):
            failures["left"] -= 1
            raise OSError("disk I/O error")
        return await real_get(rollout_id)

    rig.store.get = flaky_get  # type: ignore[method-assign]
    r = await rig.run(doc)
    assert failures["left"] == 0
    assert r.phase == Phase.SUCCEEDED


async def test_restart_mid_bake_over_the_same_file_ends_like_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    doc = spec()
    # The uninterrupted run.
    plain_store = open_store(f"sqlite:///{tmp_path}/plain.db")
    plain = Rig(plain_store)
    expected = await plain.run(doc)
    await plain.engine.stop()
    await plain_store.close()

    # Interrupted: stop mid-way through the 25% bake, a new engine over the same file.
    url = f"sqlite:///{tmp_path}/restart.db"
    first_store = open_store(url)
    rig = Rig(first_store)
    await rig.engine.start()
    r = await rig.engine.submit(doc, actor="ci")
    await drive(rig.engine, rig.clock, until=at(600))
    await rig.engine.stop()
    await first_store.close()
    mid = await _phase_at(url, r.id)
    assert (mid.phase, mid.weight) == (Phase.BAKING, 25)

    rig.store = open_store(url)
    rig.engine = rig.new_engine()  # same in-memory fleet: the traffic the old one left
    await rig.engine.start()
    await drive(rig.engine, rig.clock)
    await rig.engine.stop()
    final = await rig.store.get(r.id)
    events = await rig.store.events(r.id)
    await rig.store.close()
    assert final.phase == expected.phase == Phase.SUCCEEDED
    assert rig.backend(doc).primary == plain.backend(doc).primary == "2"
    shifted = [e.data["weight"] for e in events if e.kind == "traffic.shifted"]
    assert shifted == [10, 25, 50, 100], "the 25% step was read back and kept, not redone"
    resumed = next(e for e in events if e.kind == "daemon.resumed")
    assert resumed.data["bake_remaining"] == 300, "5 of the 10 minutes were left"


async def _phase_at(url: str, rid: str) -> Rollout:
    s = open_store(url)
    try:
        return await s.get(rid)
    finally:
        await s.close()
