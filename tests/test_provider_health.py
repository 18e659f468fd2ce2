"""Providers report health: bounded and cached checks, listed by /readyz (never making the
daemon unready), reported as canary_provider_up, and asked before a rollout starts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from api_rig import token_specs
from helpers import T0, document

from analysis.base import Measurement, MetricQuery, ProviderError
from analysis.health import ProviderHealth, ProviderState
from analysis.scripted import ScriptedProvider
from canary.api.app import build_app
from canary.clock import VirtualClock
from canary.daemon import rollout_preflight
from canary.engine import Engine
from canary.events import EventKind
from canary.metrics import Metrics
from canary.model import Event, Phase
from canary.simulate import drive
from canary.store import MemoryStore
from config.settings import Settings
from strategies.memory import MemoryFleet

GATES = {
    "interval": "30s",
    "gates": [
        {"name": "errors", "provider": "cloudwatch", "query": "errors", "max": 0.01},
        {"name": "latency", "provider": "prometheus", "query": "p95", "max": 0.5},
    ],
}


def healthy(q: MetricQuery) -> Measurement:
    return Measurement(0.001, 1000)


class Slow(ScriptedProvider):
    async def health(self) -> None:
        await asyncio.sleep(3600)


class Counting(ScriptedProvider):
    checks = 0

    async def health(self) -> None:
        self.checks += 1
        await super().health()


async def test_each_state_with_its_reason() -> None:
    down = ScriptedProvider(healthy)
    down.down = "cannot connect to http://prometheus:9090: Connection refused"
    health = ProviderHealth(
        {"cloudwatch": ScriptedProvider(healthy), "prometheus": down, "slow": Slow(healthy)},
        {"datadog": "set CANARY_DATADOG_KEY"},
        timeout=0.05,
    )
    states = {s.provider: s.as_data() for s in await health.states()}
    assert states == {
        "cloudwatch": {"state": "up"},
        "prometheus": {
            "state": "down",
            "detail": "cannot connect to http://prometheus:9090: Connection refused",
        },
        "slow": {"state": "down", "detail": "did not answer within 0.05s"},
        "datadog": {"state": "not_configured", "detail": "set CANARY_DATADOG_KEY"},
    }


async def test_a_caller_that_cannot_wait_gets_the_last_known_state() -> None:
    """What /readyz does: a slow check goes on without holding the probe up."""
    now = [0.0]
    slow = Slow(healthy)
    health = ProviderHealth({"prometheus": slow}, timeout=30, ttl=10, now=lambda: now[0])
    assert await health.state("prometheus", wait=0.01) == ProviderState(
        "prometheus", "unknown", "its first health check has not answered yet"
    )
    await health.close()  # the check in flight is cancelled, nothing is left behind
    fast = ScriptedProvider(healthy)
    health = ProviderHealth({"prometheus": fast}, ttl=10, now=lambda: now[0])
    assert (await health.state("prometheus")).state == "up"
    now[0] = 20.0
    fast.health = slow.health  # type: ignore[method-assign]
    assert (await health.state("prometheus", wait=0.01)).state == "up", "the last known state"
    await health.close()


async def test_answers_are_cached_briefly_and_shared() -> None:
    now = [0.0]
    provider = Counting(healthy)
    reported: list[tuple[str, bool]] = []
    health = ProviderHealth(
        {"prometheus": provider},
        ttl=10,
        now=lambda: now[0],
        report=lambda name, up: reported.append((name, up)),
    )
    await asyncio.gather(*(health.state("prometheus") for _ in range(5)))
    assert provider.checks == 1, "concurrent callers share one check"
    now[0] = 9.9
    await health.state("prometheus")
    assert provider.checks == 1
    provider.down = "HTTP 503 from http://prometheus:9090"
    now[0] = 10.1
    assert (await health.state("prometheus")).state == "down"
    assert provider.checks == 2
    assert reported == [("prometheus", True), ("prometheus", False)]


async def test_preflight_names_the_provider_of_each_gate_that_cannot_answer() -> None:
    down = ScriptedProvider(healthy)
    down.down = "cannot connect to http://prometheus:9090: Connection refused"
    health = ProviderHealth({"cloudwatch": ScriptedProvider(healthy), "prometheus": down})
    gates = document(analysis=GATES).spec.analysis.gates
    assert await health.problems(gates) == [
        "the prometheus provider of gate(s) 'latency' is unreachable: cannot connect to "
        "http://prometheus:9090: Connection refused"
    ]
    unset = ProviderHealth(
        {"cloudwatch": ScriptedProvider(healthy)}, {"prometheus": "set CANARY_PROMETHEUS_URL"}
    )
    assert await unset.problems(gates) == [
        "the prometheus provider of gate(s) 'latency' is not configured in this daemon: "
        "set CANARY_PROMETHEUS_URL"
    ]


# ---------------------------------------------------------------- the start of a rollout


class Flapping(ScriptedProvider):
    """Down for its first ``down_for`` health checks, up after."""

    def __init__(self, down_for: int) -> None:
        super().__init__(healthy)
        self.down_for = down_for
        self.checks = 0

    async def health(self) -> None:
        self.checks += 1
        if self.checks <= self.down_for:
            raise ProviderError("cannot connect to http://prometheus:9090: Connection refused")


async def run(prometheus: ScriptedProvider | None) -> tuple[Any, Any, list[Event]]:
    """One rollout whose prometheus gate is served by ``prometheus`` (None: not configured):
    the stored rollout, its target's backend and its events."""
    clock = VirtualClock(T0)
    store = MemoryStore()
    fleet = MemoryFleet(stable="1")
    providers = {"cloudwatch": ScriptedProvider(healthy)}
    unset = {"prometheus": "set CANARY_PROMETHEUS_URL"}
    if prometheus is not None:
        providers["prometheus"] = prometheus
        unset = {}
    engine = Engine(
        store,
        clock,
        fleet.factory,
        providers,
        preflight=rollout_preflight(ProviderHealth(providers, unset, ttl=0)),
    )
    await engine.start()
    doc = document(analysis=GATES, steps=[{"weight": 50, "bake": "1m"}, {"weight": 100}])
    submitted = await engine.submit(doc, actor="ci")
    await drive(engine, clock)
    await engine.stop()
    events = list(await store.events(submitted.id))
    return await store.get(submitted.id), fleet.backend(doc.spec.targets[0].key()), events


def retries(events: list[Event]) -> list[Event]:
    return [e for e in events if e.kind == EventKind.PREFLIGHT_FAILED]


async def test_a_provider_that_is_not_configured_fails_the_start_at_once() -> None:
    rollout, backend, events = await run(None)
    assert rollout.phase is Phase.FAILED
    assert "not configured in this daemon: set CANARY_PROMETHEUS_URL" in (rollout.reason or "")
    assert retries(events) == [], "nothing a retry could fix"
    assert backend.calls == []


async def test_a_provider_that_comes_back_within_the_budget_lets_the_rollout_go_on() -> None:
    rollout, _, events = await run(Flapping(down_for=2))
    assert rollout.phase is Phase.SUCCEEDED
    attempts = retries(events)
    assert len(attempts) == 2
    assert attempts[0].data["error"]["kind"] == "temporary"
    assert "prometheus provider" in attempts[0].data["error"]["message"]


async def test_a_rollout_whose_provider_is_down_fails_preflight_naming_it() -> None:
    down = ScriptedProvider(healthy)
    down.down = "cannot connect to http://prometheus:9090: Connection refused"
    rollout, backend, events = await run(down)
    assert rollout.phase is Phase.FAILED
    assert "the prometheus provider of gate(s) 'latency' is unreachable" in (rollout.reason or "")
    assert retries(events), "a provider that is down may come back: the start is retried first"
    assert backend.calls == [], "no target was touched"


async def test_a_rollout_whose_providers_answer_goes_on() -> None:
    rollout, _, _ = await run(ScriptedProvider(healthy))
    assert rollout.phase is Phase.SUCCEEDED


# ---------------------------------------------------------------- /readyz and the gauge


@pytest.fixture
async def served() -> AsyncIterator[tuple[TestClient[Any, Any], ScriptedProvider]]:
    down = ScriptedProvider(healthy)
    down.down = "HTTP 401 from http://prometheus:9090: check the CANARY_PROMETHEUS_* credentials"
    metrics = Metrics()
    health = ProviderHealth(
        {"cloudwatch": ScriptedProvider(healthy), "prometheus": down},
        report=metrics.provider_health,
    )
    engine = Engine(MemoryStore(), VirtualClock(T0), MemoryFleet().factory, {})
    settings = Settings(tokens=token_specs(), aws_region="us-east-1")
    app = build_app(engine, settings, metrics_registry=metrics, health=health)
    await engine.start()
    async with TestClient(TestServer(app)) as client:
        yield client, down
    await engine.stop()


async def test_a_scrape_reports_each_providers_health(
    served: tuple[TestClient[Any, Any], ScriptedProvider],
) -> None:
    client, _ = served
    scraped = await (await client.get("/metrics")).text()
    assert 'canary_provider_up{provider="cloudwatch"} 1.0' in scraped
    assert 'canary_provider_up{provider="prometheus"} 0.0' in scraped


async def test_readyz_lists_each_provider_and_stays_ready_when_one_is_down(
    served: tuple[TestClient[Any, Any], ScriptedProvider],
) -> None:
    client, _ = served
    response = await client.get("/readyz")
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ready"
    assert body["providers"] == {
        "cloudwatch": {"state": "up"},
        "prometheus": {
            "state": "down",
            "detail": "HTTP 401 from http://prometheus:9090: check the CANARY_PROMETHEUS_* "
            "credentials",
        },
    }
    scraped = await (await client.get("/metrics")).text()
    assert 'canary_provider_up{provider="cloudwatch"} 1.0' in scraped
    assert 'canary_provider_up{provider="prometheus"} 0.0' in scraped
