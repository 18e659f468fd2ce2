"""The store goes away while rollouts run (database down, disk full), then comes back.

docs/operations.md promises: a step that cannot be loaded or stored is logged with the
rollout id and retried with backoff; no traffic moves without its intent stored first;
the rollout carries on once the store answers again. This checks it on virtual time with
the real engine, machine and scheduler over a store that refuses every call while "down",
once in the middle of a bake and once between the write-ahead intent and the result of a
shift (the shift landed on the backend, its result could not be stored).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pytest
import structlog
from helpers import T0, at, document

from analysis.base import Measurement, MetricQuery
from analysis.scripted import ScriptedProvider
from canary.clock import VirtualClock
from canary.engine import Engine, EngineOptions
from canary.model import NewEvent, Phase, Rollout
from canary.simulate import drive
from canary.store import MemoryStore, StoreError


def healthy(q: MetricQuery) -> Measurement:
    return Measurement(0.002, 1000)


class FlakyStore(MemoryStore):
    """A MemoryStore that refuses every read and write while ``down``. With ``down_after``
    set to a weight, it goes down right after storing the intent to shift to it."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.down_after: float | None = None
        self.refused = 0

    def _check(self) -> None:
        if self.down:
            self.refused += 1
            raise StoreError("database is down: connection refused")

    async def get(self, rollout_id: str) -> Rollout:
        self._check()
        return await super().get(rollout_id)

    async def save(
        self, rollout: Rollout, events: Sequence[NewEvent], at: datetime, **kw: Any
    ) -> tuple[Rollout, list[Any]]:
        self._check()
        saved = await super().save(rollout, events, at, **kw)
        if any(
            e.kind == "traffic.shifting" and e.data["weight"] == self.down_after for e in events
        ):
            self.down = True
        return saved


SPEC = {
    "steps": [{"weight": 10, "bake": "1m"}, {"weight": 50, "bake": "1m"}, {"weight": 100}],
    "analysis": {
        "interval": "10s",
        "gates": [{"name": "errors", "provider": "cloudwatch", "query": "e", "max": 0.01}],
    },
}


@pytest.fixture
def rig() -> tuple[FlakyStore, VirtualClock, Engine, Any]:
    from strategies.memory import MemoryFleet

    store, clock, fleet = FlakyStore(), VirtualClock(T0), MemoryFleet(stable="1")
    engine = Engine(
        store,
        clock,
        fleet.factory,
        {"cloudwatch": ScriptedProvider(healthy)},
        options=EngineOptions(step_retry=1.0),
    )
    return store, clock, engine, fleet


async def test_a_store_down_mid_bake_holds_the_rollout_and_it_carries_on_after(
    rig: tuple[FlakyStore, VirtualClock, Engine, Any],
) -> None:
    store, clock, engine, fleet = rig
    doc = document(**SPEC)
    backend = fleet.backend(doc.spec.targets[0].key())
    await engine.start()
    try:
        r = await engine.submit(doc, actor="ci")
        await drive(engine, clock, until=at(30))
        assert (await store.get(r.id)).phase == Phase.BAKING
        assert backend.extra_weight == 10

        store.down = True
        with structlog.testing.capture_logs() as logs:
            await drive(engine, clock, until=at(30 + 600))  # ten minutes without a store
        assert store.refused >= 5, "tried again and again"
        failed = [e for e in logs if e["event"] == "rollout.step_failed"]
        assert failed, "each failure logged"
        assert "database is down" in failed[0]["error"]
        delays = [e["retry_in"] for e in failed]
        assert delays[:3] == sorted(delays[:3]), "with backoff"
        assert max(delays) <= 60
        assert backend.extra_weight == 10, "no traffic moved without its intent stored"

        store.down = False
        await drive(engine, clock, until=at(30 + 600 + 600))
    finally:
        await engine.stop()
    final = await store.get(r.id)
    assert final.phase == Phase.SUCCEEDED, final.reason
    assert backend.primary == doc.spec.targets[0].canary_version


async def test_the_store_lost_between_the_intent_and_the_result_of_a_shift(
    rig: tuple[FlakyStore, VirtualClock, Engine, Any],
) -> None:
    store, clock, engine, fleet = rig
    doc = document(**SPEC)
    backend = fleet.backend(doc.spec.targets[0].key())
    await engine.start()
    try:
        r = await engine.submit(doc, actor="ci")
        await drive(engine, clock, stop=lambda: backend.extra_weight == 10)

        async def intent_stored() -> bool:
            return any(
                e.kind == "traffic.shifting" and e.data["weight"] == 50
                for e in await store.events(r.id)
            )

        # The intent to go to 50% is stored, then the store goes: the result is not.
        store.down_after = 50
        await drive(engine, clock, until=at(300))
        assert await intent_stored()
        assert backend.extra_weight == 50, "the write landed"
        stored = await MemoryStore.get(store, r.id)
        assert stored.phase == Phase.SHIFTING, "its result was never stored"
        assert stored.weight == 10
        store.down, store.down_after = False, None
        await drive(engine, clock, until=at(1200))
    finally:
        await engine.stop()
    final = await store.get(r.id)
    assert final.phase == Phase.SUCCEEDED, final.reason
    events = await store.events(r.id)
    assert "traffic.drift" not in [e.kind for e in events], "its own write is not drift"
    assert [e.data["weight"] for e in events if e.kind == "traffic.shifted"] == [10, 50, 100]
