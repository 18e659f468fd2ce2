"""A metrics outage with the real Prometheus stopped: never a promotion, the policy followed.

What canary does when its metrics go away (docs/operations.md, "Prometheus down"):

* **mid-bake**: every evaluation is an ERROR naming the provider's failure, recorded with
  the error counter and its limit. A step never ends on an ERROR, so the rollout holds
  at its weight, bake time spent or not, and is never promoted. When Prometheus returns
  within ``consecutive_error_limit`` evaluations, the counter resets and the rollout
  carries on by itself (below). Past the limit it rolls back with cause
  ``provider_errors`` (``tests/test_prometheus.py::
  test_prometheus_stopped_mid_bake_is_error_then_rollback``).
* **before the start**: the provider health check (analysis/health.py) refuses the start
  with a temporary error naming the provider; nothing moves, the start is retried within
  the action retry budget, and the rollout starts when Prometheus answers again.

The real ``prometheus`` binary scrapes ``promserver.TrafficApp``; it is stopped and started
again on the same port and data directory, as a restarted Prometheus server would be.
The engine runs in-process on the real clock, with in-memory targets (the traffic moves
only in the app, by the rollout's weights).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import document, lambda_target
from promserver import Behaviour, PrometheusServer, TrafficApp

from analysis.health import ProviderHealth
from analysis.prometheus import PrometheusOptions, PrometheusProvider
from canary.clock import RealClock
from canary.daemon import rollout_preflight
from canary.engine import Engine, EngineOptions
from canary.model import Event, Phase, Rollout
from canary.store.memory import MemoryStore
from strategies.memory import MemoryBackend, MemoryFleet

_numbers = itertools.count(5010, 10)

ANALYSIS: dict[str, Any] = {
    "interval": "1s",
    "warmup": "0s",
    "consecutive_error_limit": 10,  # ten seconds of outage at this interval
    "inconclusive_limit": 10,  # the first scrapes after a restart may lack samples
    "gates": [
        {
            "name": "error-rate",
            "provider": "prometheus",
            "preset": "http-error-rate",
            "max": 0.05,
            "min_samples": 20,
            "window": "4s",
            "delay": "0s",
        }
    ],
}


class Restartable(PrometheusServer):
    """A Prometheus that can be stopped and started again where it was (port and data)."""

    def restart(self) -> None:
        log = self.log.open("ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                *self._write_config(),
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        assert self._wait_ready(), self.log.read_text()[-3000:]


@pytest.fixture(scope="module")
def app() -> Iterator[TrafficApp]:
    traffic = TrafficApp(seed=15).start()
    yield traffic
    traffic.stop()


@pytest.fixture
def prometheus(app: TrafficApp, tmp_path: Path) -> Iterator[Restartable]:
    server = Restartable(tmp_path, [f"127.0.0.1:{app.port}"])
    server.start()
    server.wait_for_series('up{job="app"} == 1', "Prometheus' first scrape of the test app")
    yield server
    server.stop()


class Rig:
    """The engine on the real clock: in-memory targets, Prometheus for the gates, and the
    daemon's preflight over the providers' health."""

    def __init__(self, url: str) -> None:
        self.store = MemoryStore()
        stable, self.canary = str(next(_numbers)), str(next(_numbers) + 1)
        self.fleet = MemoryFleet(stable=stable)
        self.provider = PrometheusProvider(PrometheusOptions(url=url, timeout=2))
        self.health = ProviderHealth({"prometheus": self.provider}, timeout=2, ttl=0.2)
        self.engine = Engine(
            self.store,
            RealClock(),
            self.fleet.factory,
            {"prometheus": self.provider},
            options=EngineOptions(provider_timeout=3),
            preflight=rollout_preflight(self.health),
        )
        self.stable = stable
        self.id = ""

    def serve(self, app: TrafficApp, backend: MemoryBackend) -> None:
        """200 requests/s split by the rollout's weight; a healthy canary."""
        share = share_of(backend, self.canary)
        app.serve(self.stable, Behaviour(rps=lambda: 200 * (1 - share()), error_rate=0.001))
        app.serve(self.canary, Behaviour(rps=lambda: 200 * share(), error_rate=0.001))

    async def submit(self, app: TrafficApp) -> Rollout:
        doc = document(
            targets=[lambda_target(version=self.canary)],
            steps=[{"weight": 20, "bake": "3s"}, {"weight": 100}],
            analysis=ANALYSIS,
        )
        self.serve(app, self.fleet.backend(doc.spec.targets[0].key()))
        await self.engine.start()
        r = await self.engine.submit(doc, actor="ci")
        self.id = r.id
        return r

    async def rollout(self) -> Rollout:
        return await self.store.get(self.id)

    async def events(self) -> list[Event]:
        return await self.store.events(self.id)

    async def until(self, what: str, check: Callable[[], Any]) -> Any:
        deadline = asyncio.get_running_loop().time() + 60
        while asyncio.get_running_loop().time() < deadline:
            found = await check()
            if found:
                return found
            await asyncio.sleep(0.1)
        r = await self.rollout()
        pytest.fail(f"never saw {what}; the rollout is {r.phase}: {r.reason or r.paused_reason}")

    async def close(self) -> None:
        await self.engine.stop()
        self.provider.close()


def share_of(backend: MemoryBackend, canary: str) -> Callable[[], float]:
    def share() -> float:
        if backend.primary == canary:
            return 1.0
        return backend.extra_weight / 100 if backend.extra == canary else 0.0

    return share


@pytest.fixture
async def rig(prometheus: Restartable) -> AsyncIterator[Rig]:
    made = Rig(prometheus.url)
    yield made
    await made.close()


def evaluations(events: list[Event]) -> list[Event]:
    return [e for e in events if e.kind == "analysis.evaluated"]


def verdicts(event: Event) -> set[str]:
    return {res["verdict"] for res in event.data["results"]}


async def test_prometheus_down_mid_bake_holds_the_step_then_the_rollout_carries_on(
    app: TrafficApp, prometheus: Restartable, rig: Rig
) -> None:
    await rig.submit(app)

    async def judged_healthy() -> bool:
        return any(verdicts(e) == {"PASS"} for e in evaluations(await rig.events()))

    await rig.until("a passing evaluation at 20%", judged_healthy)
    prometheus.stop()  # mid-bake: the metrics go away
    down_at = dt.datetime.now(dt.UTC)

    async def errors_seen() -> list[Event]:
        held = [e for e in evaluations(await rig.events()) if e.at >= down_at]
        held = [e for e in held if verdicts(e) == {"ERROR"}]
        return held if len(held) >= 5 else []

    held = await rig.until("five evaluations in error", errors_seen)
    r = await rig.rollout()
    assert r.phase == Phase.BAKING, "held at its step: not paused, not rolled back"
    assert r.step == 0
    assert r.bake_remaining(dt.datetime.now(dt.UTC)) == 0, "the bake time is spent..."
    assert rig.fleet.backend(r.targets[0].key).extra_weight == 20, "...and traffic stays at 20%"
    kinds = {e.kind for e in await rig.events() if e.at >= down_at}
    assert kinds == {"analysis.evaluated"}, "nothing moved while the metrics were away"
    # Each held evaluation explains itself: the provider's failure, the counter, its limit.
    for n, event in enumerate(held[:5], start=held[0].data["counters"]["consecutive_errors"]):
        assert event.data["counters"]["consecutive_errors"] == n
        assert event.data["limits"]["consecutive_error_limit"] == 10
        (result,) = event.data["results"]
        assert "cannot connect to" in result["explanation"], result
        assert "ERROR" in event.message

    prometheus.restart()  # back within the limit
    up_at = dt.datetime.now(dt.UTC)

    async def ended() -> Rollout | None:
        r = await rig.rollout()
        return r if r.phase.terminal else None

    r = await rig.until("the rollout to end", ended)
    assert r.phase == Phase.SUCCEEDED, r.reason
    events = await rig.events()
    (promotion,) = [e for e in events if e.kind == "promotion.started"]
    assert promotion.at > up_at, "promoted only once Prometheus answered again"
    deciding = [e for e in evaluations(events) if e.at < promotion.at][-1]
    assert verdicts(deciding) == {"PASS"}, "on a passing evaluation of real data"
    assert "rollback.started" not in {e.kind for e in events}


async def test_prometheus_down_before_the_start_holds_it_until_prometheus_answers(
    app: TrafficApp, prometheus: Restartable, rig: Rig
) -> None:
    prometheus.stop()
    await rig.submit(app)

    async def refused() -> Event | None:
        return next((e for e in await rig.events() if e.kind == "preflight.failed"), None)

    event = await rig.until("the preflight refusing the start", refused)
    assert "prometheus" in event.message
    assert event.data["error"]["kind"] == "temporary", "retried: a provider may come back"
    r = await rig.rollout()
    assert r.phase == Phase.PENDING
    assert rig.fleet.backend(r.targets[0].key).extra_weight == 0, "no traffic moved"

    prometheus.restart()

    async def ended() -> Rollout | None:
        r = await rig.rollout()
        return r if r.phase.terminal else None

    r = await rig.until("the rollout to end", ended)
    assert r.phase == Phase.SUCCEEDED, r.reason
    kinds = [e.kind for e in await rig.events()]
    assert kinds.index("preflight.failed") < kinds.index("traffic.shifting")
