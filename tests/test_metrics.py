"""The daemon's metrics, fed by the engine's observer hooks, on virtual time.

Each test runs real rollouts (engine, machine, judges, in-memory targets, scripted
metrics) and reads the figures an SRE would graph or alert on from the Prometheus text.
"""

from __future__ import annotations

from collections.abc import Sequence

from helpers import T0, document, lambda_target
from prometheus_client.parser import text_string_to_metric_families

from analysis.base import Measurement, MetricQuery, ProviderError
from analysis.scripted import ScriptedProvider
from canary.clock import VirtualClock
from canary.engine import Engine, EngineOptions
from canary.events import RollbackCause
from canary.machine import Command
from canary.metrics import Metrics
from canary.model import Event, Rollout
from canary.simulate import drive
from canary.store import MemoryStore
from strategies.base import PermanentError, TemporaryError
from strategies.memory import MemoryFleet

GATES = {
    "warmup": "0s",  # every evaluation counts: the counters are compared with them
    "interval": "30s",
    "gates": [
        {"name": "error-rate", "provider": "cloudwatch", "query": "errors", "max": 0.01},
        {"name": "p95", "provider": "prometheus", "query": "p95", "max": 500},
    ],
}


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    """The value of one sample in the rendered text (what Prometheus would scrape)."""
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    raise AssertionError(f"no sample {name}{labels}")


class Rig:
    def __init__(self, script: object, notifiers: Sequence[object] = ()) -> None:
        self.clock = VirtualClock(T0)
        self.store = MemoryStore()
        self.fleet = MemoryFleet(stable="1")
        self.metrics = Metrics()
        provider = ScriptedProvider(script)  # type: ignore[arg-type]
        self.engine = Engine(
            self.store,
            self.clock,
            self.fleet.factory,
            {"cloudwatch": provider, "prometheus": provider},
            notifiers=notifiers,  # type: ignore[arg-type]
            options=EngineOptions(step_retry=1.0),
            observer=self.metrics,
        )

    async def run(self, *docs: object) -> list[Rollout]:
        await self.engine.start()
        ids = [(await self.engine.submit(d, actor="ci")).id for d in docs]  # type: ignore[arg-type]
        await drive(self.engine, self.clock)
        await self.engine.stop()
        return [await self.store.get(i) for i in ids]


def healthy(q: MetricQuery) -> Measurement | ProviderError:
    return Measurement(0.002 if q.gate == "error-rate" else 120, 1000)


def errors_at_25(q: MetricQuery) -> Measurement | ProviderError:
    if q.gate == "error-rate" and q.weight >= 25:
        return Measurement(0.05, 1000)
    return healthy(q)


async def test_a_promoted_and_a_rolled_back_rollout_are_counted_by_outcome() -> None:
    rig = Rig(errors_at_25)
    ok = document(analysis=GATES, steps=[{"weight": 10, "bake": "1m"}, {"weight": 100}])
    bad = document(analysis=GATES, targets=[lambda_target("payments")])
    await rig.run(ok, bad)
    m = rig.metrics
    assert sample(m, "canary_rollouts_started_total") == 2
    assert sample(m, "canary_rollouts_finished_total", phase="succeeded") == 1
    assert sample(m, "canary_rollouts_finished_total", phase="rolled_back") == 1
    assert sample(m, "canary_rollbacks_total", reason="gate_failed") == 1
    assert sample(m, "canary_rollbacks_total", reason="aborted") == 0
    # ok: steps 1 (10%) and 2 (100%) entered, then its promotion; bad: steps 1 and 2
    assert sample(m, "canary_step_transitions_total", to="step") == 4
    assert sample(m, "canary_step_transitions_total", to="promotion") == 1
    assert sample(m, "canary_gate_verdicts_total", gate="error-rate", verdict="FAIL") == 2
    passes = sample(m, "canary_gate_verdicts_total", gate="p95", verdict="PASS")
    evaluations = [
        e
        for r in await rig.store.list()
        for e in await rig.store.events(r.id)
        if e.kind == "analysis.evaluated"
    ]
    assert passes == len(evaluations), "one p95 verdict per evaluation"
    assert sample(m, "canary_provider_query_duration_seconds_count", provider="cloudwatch") == len(
        evaluations
    )


async def test_an_abort_is_counted_as_an_aborted_rollback() -> None:
    rig = Rig(healthy)
    await rig.engine.start()
    r = await rig.engine.submit(document(analysis=GATES), actor="ci")
    await drive(rig.engine, rig.clock, until=rig.clock.now().replace(minute=2))
    await rig.engine.command(r.id, Command("abort", "ana", reason="bad build"))
    await drive(rig.engine, rig.clock)
    await rig.engine.stop()
    assert sample(rig.metrics, "canary_rollbacks_total", reason="aborted") == 1
    assert sample(rig.metrics, "canary_commands_total", command="abort") == 1


async def test_backend_calls_are_timed_and_errors_counted_by_strategy_and_operation() -> None:
    rig = Rig(healthy)
    doc = document(analysis=GATES, steps=[{"weight": 50}, {"weight": 100}])
    rig.fleet.backend(doc.spec.targets[0].key()).fail("shift", TemporaryError("Throttled"))
    (r,) = await rig.run(doc)
    assert r.phase.value == "succeeded", "a throttled shift is tried again"
    m = rig.metrics
    shift = {"strategy": "memory", "operation": "shift"}
    assert sample(m, "canary_backend_call_errors_total", **shift, error="TemporaryError") == 1
    assert sample(m, "canary_backend_call_duration_seconds_count", **shift) == 3, "50% twice, 100%"
    promote = {"strategy": "memory", "operation": "promote"}
    assert sample(m, "canary_backend_call_duration_seconds_count", **promote) == 1
    assert sample(m, "canary_rollbacks_total", reason="shift_failed") == 0


async def test_rollbacks_are_labelled_by_the_cause_the_machine_recorded() -> None:
    rig = Rig(healthy)
    refused = document(analysis=GATES, steps=[{"weight": 50}, {"weight": 100}])
    unpromotable = document(analysis=GATES, steps=[{"weight": 100}], targets=[lambda_target("b")])
    denied = PermanentError("AccessDenied: lambda:UpdateAlias")
    rig.fleet.backend(refused.spec.targets[0].key()).fail("shift", denied)
    rig.fleet.backend(unpromotable.spec.targets[0].key()).fail("promote", denied)
    results = await rig.run(refused, unpromotable)
    assert [r.phase.value for r in results] == ["rolled_back", "rolled_back"]
    assert [r.cause for r in results] == [
        RollbackCause.SHIFT_FAILED,
        RollbackCause.PROMOTION_FAILED,
    ]
    assert sample(rig.metrics, "canary_rollbacks_total", reason="shift_failed") == 1
    assert sample(rig.metrics, "canary_rollbacks_total", reason="promotion_failed") == 1
    assert sample(rig.metrics, "canary_rollbacks_total", reason="gate_failed") == 0


async def test_provider_errors_are_counted() -> None:
    def down(q: MetricQuery) -> Measurement | ProviderError:
        return ProviderError("connection refused")

    rig = Rig(down)
    (r,) = await rig.run(document(analysis=GATES))
    assert r.phase.value == "rolled_back"
    failures = sample(rig.metrics, "canary_provider_query_errors_total", provider="prometheus")
    assert failures == sample(
        rig.metrics, "canary_provider_query_duration_seconds_count", provider="prometheus"
    )
    assert failures > 0
    assert sample(rig.metrics, "canary_rollbacks_total", reason="provider_errors") == 1


async def test_notification_failures_are_counted_and_never_hold_a_rollout_back() -> None:
    class Broken:
        async def notify(self, rollout: Rollout, events: Sequence[Event]) -> None:
            raise ConnectionError("slack is down")

    rig = Rig(healthy, notifiers=[Broken()])
    (r,) = await rig.run(document(analysis=GATES, steps=[{"weight": 100}]))
    assert r.phase.value == "succeeded"
    assert sample(rig.metrics, "canary_notification_failures_total", notifier="Broken") > 0


async def test_live_rollouts_by_phase_come_from_the_store() -> None:
    rig = Rig(healthy)
    await rig.engine.start()
    await rig.engine.submit(document(analysis=GATES), actor="ci")
    await drive(rig.engine, rig.clock, until=rig.clock.now().replace(minute=1))
    rig.metrics.set_live(await rig.store.live())
    await rig.engine.stop()
    assert sample(rig.metrics, "canary_rollouts", phase="baking") == 1
    assert sample(rig.metrics, "canary_rollouts", phase="paused") == 0
