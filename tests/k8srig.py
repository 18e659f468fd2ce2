"""The engine over a real Kubernetes router object: shared by the tests of every k8s kind.

``Rig`` runs the real engine on a virtual clock with scripted metrics; ``Watched`` wraps the
real strategy and, after each write, has the admin read the object's weights back (as a
person with kubectl would), and records a 409 the strategy met.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from analysis.base import Measurement, MetricQuery
from analysis.scripted import ScriptedProvider
from canary.clock import VirtualClock
from canary.engine import Engine, EngineOptions
from canary.model import Rollout
from canary.simulate import Scheduled, drive
from canary.store.memory import MemoryStore
from config.spec import RolloutDocument
from config.targets import Target
from strategies.base import ConflictError, Strategy, TrafficSplit
from strategies.k8s import KubeClients, from_settings
from strategies.registry import Clients, factory

GATES = {
    "interval": "30s",
    "failure_limit": 0,
    "gates": [{"name": "error-rate", "provider": "cloudwatch", "query": "errors", "max": 0.01}],
}

Weights = dict[str, int]
Seen = list[tuple[str, float | None, Weights]]
Hook = Callable[[float], None]


class Router(Protocol):
    def weights(self) -> Weights: ...


def healthy(q: MetricQuery) -> Measurement:
    return Measurement(0.001, 1000)


def spike_from(weight: float) -> Callable[[MetricQuery], Measurement]:
    def script(q: MetricQuery) -> Measurement:
        return Measurement(0.05 if q.weight >= weight else 0.001, 1000)

    return script


class Watched:
    """The real strategy; after each write the admin reads the route's weights back."""

    kind = "k8s-gateway-api"

    def __init__(
        self, inner: Strategy, routes: Router, seen: Seen, before_shift: Hook | None
    ) -> None:
        self.inner, self.routes, self.seen, self.before_shift = inner, routes, seen, before_shift

    async def _record(self, what: str, weight: float | None, split: TrafficSplit) -> TrafficSplit:
        self.seen.append((what, weight, await asyncio.to_thread(self.routes.weights)))
        return split

    async def validate(self) -> None:
        await self.inner.validate()

    async def observe(self) -> TrafficSplit:
        return await self.inner.observe()

    async def shift(self, canary_percent: float) -> TrafficSplit:
        if self.before_shift is not None:
            await asyncio.to_thread(self.before_shift, canary_percent)
        try:
            split = await self.inner.shift(canary_percent)
        except ConflictError:
            self.seen.append(("409", canary_percent, await asyncio.to_thread(self.routes.weights)))
            raise
        return await self._record("shift", canary_percent, split)

    async def promote(self) -> TrafficSplit:
        return await self._record("promote", None, await self.inner.promote())

    async def rollback(self) -> TrafficSplit:
        return await self._record("rollback", None, await self.inner.rollback())


class Rig:
    def __init__(
        self,
        kube: KubeClients,
        routes: Router,
        script: Callable[[MetricQuery], Measurement] = healthy,
        before_shift: Hook | None = None,
    ) -> None:
        self.clock = VirtualClock()
        self.store = MemoryStore()
        self.seen: Seen = []
        build = factory(Clients(None, {from_settings: kube}))

        def watched(target: Target, stable: str | None) -> Strategy:
            return Watched(build(target, stable), routes, self.seen, before_shift)

        self.engine = Engine(
            self.store,
            self.clock,
            watched,
            {"cloudwatch": ScriptedProvider(script)},
            options=EngineOptions(step_retry=1.0),
        )

    async def run(self, doc: RolloutDocument, scheduled: list[Scheduled] | None = None) -> Rollout:
        await self.engine.start()
        try:
            r = await self.engine.submit(doc, actor="ci")
            await drive(self.engine, self.clock, scheduled=scheduled)
            return await self.store.get(r.id)
        finally:
            await self.engine.stop()

    async def events(self, r: Rollout) -> list[str]:
        return [e.kind for e in await self.store.events(r.id)]
