"""A rollout of several targets is judged on every one of them.

Each gate is asked per target (presets and ``{{ variables }}`` filled in from that target),
each result names its target as data and in words, and the worst target decides. A gate
reading a variable one of its targets lacks is refused when the spec is read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from helpers import T0, document, lambda_target

from analysis.base import Measurement, MetricQuery
from analysis.scripted import ScriptedProvider
from canary.clock import VirtualClock
from canary.engine import Engine, EngineOptions
from canary.events import EventKind
from canary.model import Event, Phase, Rollout
from canary.simulate import drive
from canary.store.memory import MemoryStore
from canary.timeline import describe
from config.errors import SpecError
from config.spec import RolloutDocument, load_file
from strategies.memory import MemoryFleet

API = lambda_target("orders-api", "57")
WORKER = lambda_target("orders-worker", "23")
API_KEY = "lambda-alias/default-region/orders-api/live"
WORKER_KEY = "lambda-alias/default-region/orders-worker/live"
STEPS = [{"weight": 10, "bake": "2m"}, {"weight": 100}]


def analysis(*gates: dict[str, Any]) -> dict[str, Any]:
    return {"interval": "30s", "warmup": "0s", "gates": list(gates)}


ERROR_RATE = {"name": "error-rate", "provider": "cloudwatch", "preset": "lambda-error-rate"}


def bad_worker(q: MetricQuery) -> Measurement:
    """The worker's canary fails 5% of its invocations; everything else 0.2%."""
    bad = q.variables["function"] == "orders-worker" and q.side == "canary"
    return Measurement(0.05 if bad else 0.002, 5000)


class Rig:
    def __init__(self, script: Any) -> None:
        self.clock = VirtualClock(T0)
        self.store = MemoryStore()
        self.provider = ScriptedProvider(script)
        self.engine = Engine(
            self.store,
            self.clock,
            MemoryFleet(stable="1").factory,
            {"cloudwatch": self.provider, "prometheus": self.provider},
            options=EngineOptions(step_retry=1.0),
        )

    async def run(self, doc: RolloutDocument) -> tuple[Rollout, list[Event]]:
        await self.engine.start()
        r = await self.engine.submit(doc, actor="ci")
        await drive(self.engine, self.clock)
        return await self.store.get(r.id), await self.store.events(r.id)


@pytest.fixture
async def rigs() -> AsyncIterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for rig in made:
        await rig.engine.stop()


def evaluations(events: list[Event]) -> list[Event]:
    return [e for e in events if e.kind == EventKind.ANALYSIS_EVALUATED]


async def test_a_bad_second_target_is_caught_and_its_verdict_names_it(rigs: list[Rig]) -> None:
    rig = Rig(bad_worker)
    rigs.append(rig)
    doc = document(
        targets=[API, WORKER], steps=STEPS, analysis=analysis(ERROR_RATE | {"max": 0.01})
    )
    r, events = await rig.run(doc)

    assert r.phase == Phase.ROLLED_BACK, "judged on the first target only, it would promote"
    assert "orders-worker" in (r.reason or "")
    first = evaluations(events)[0]
    by_target = {res["target"]: res for res in first.data["results"]}
    assert set(by_target) == {API_KEY, WORKER_KEY}
    assert by_target[API_KEY]["verdict"] == "PASS"
    assert by_target[WORKER_KEY]["verdict"] == "FAIL"
    assert by_target[WORKER_KEY]["explanation"].startswith(f"error-rate [{WORKER_KEY}] 0.05")
    assert f"error-rate [{WORKER_KEY}]" in describe(first)
    # Each target was asked with its own function and versions.
    asked = {
        (q.variables["function"], q.side, q.variables[f"{q.side}_version"])
        for q, _ in rig.provider.queries
    }
    assert asked == {
        ("orders-api", "canary", "57"),
        ("orders-api", "stable", "1"),
        ("orders-worker", "canary", "23"),
        ("orders-worker", "stable", "1"),
    }


async def test_healthy_targets_are_promoted_with_a_result_per_target(rigs: list[Rig]) -> None:
    rig = Rig(lambda q: Measurement(0.002, 5000))
    rigs.append(rig)
    doc = document(
        targets=[API, WORKER], steps=STEPS, analysis=analysis(ERROR_RATE | {"max": 0.01})
    )
    r, events = await rig.run(doc)
    assert r.phase == Phase.SUCCEEDED
    for e in evaluations(events):
        assert sorted(res["target"] for res in e.data["results"]) == [API_KEY, WORKER_KEY]


async def test_a_gate_limited_to_one_target_judges_that_one_only(rigs: list[Rig]) -> None:
    rig = Rig(bad_worker)
    rigs.append(rig)
    gate = ERROR_RATE | {"max": 0.01, "targets": [0]}
    doc = document(targets=[API, WORKER], steps=STEPS, analysis=analysis(gate))
    r, events = await rig.run(doc)
    assert r.phase == Phase.SUCCEEDED, "the worker is not this gate's to judge"
    assert {q.variables["function"] for q, _ in rig.provider.queries} == {"orders-api"}
    assert {res["target"] for e in evaluations(events) for res in e.data["results"]} == {API_KEY}


async def test_a_question_that_names_nothing_target_specific_is_asked_once(
    rigs: list[Rig],
) -> None:
    rig = Rig(lambda q: Measurement(0.002, 5000))
    rigs.append(rig)
    gate = {"name": "errors", "provider": "prometheus", "query": "sum(errors)", "max": 0.01}
    doc = document(targets=[API, WORKER], steps=STEPS, analysis=analysis(gate))
    r, events = await rig.run(doc)
    assert r.phase == Phase.SUCCEEDED
    first = evaluations(events)[0]
    [only] = first.data["results"]
    assert only["target"] is None
    assert only["explanation"].startswith(f"errors [2 targets, asked once: {API_KEY}, ")
    assert len(rig.provider.queries) == len(evaluations(events))


async def test_a_single_target_result_names_it_as_data_and_keeps_its_words(
    rigs: list[Rig],
) -> None:
    rig = Rig(lambda q: Measurement(0.002, 5000))
    rigs.append(rig)
    doc = document(targets=[API], steps=STEPS, analysis=analysis(ERROR_RATE | {"max": 0.01}))
    _, events = await rig.run(doc)
    [res] = evaluations(events)[0].data["results"]
    assert res["target"] == API_KEY
    assert res["explanation"].startswith("error-rate 0.002 ≤ max 0.01")


# ------------------------------------------------------------ refused when read


def refused(targets: list[dict[str, Any]], gate: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        document(targets=targets, analysis=analysis(gate))
    return [str(p) for p in caught.value.problems]


GATEWAY = {
    "kind": "k8s-gateway-api",
    "namespace": "shop",
    "route": "orders",
    "stable_service": "orders-v1",
    "canary_service": "orders-v2",
}


def test_a_variable_one_judged_target_lacks_is_refused_naming_it_and_the_fix() -> None:
    gate = {
        "name": "latency",
        "provider": "prometheus",
        "query": 'p95{namespace="{{ namespace }}", version="{{ canary_version }}"}',
        "max": 1,
    }
    [problem] = refused([API, GATEWAY], gate)
    assert problem == (
        "spec.analysis.gates[0].query: {{ namespace }} has no value on targets[0] "
        "(lambda-alias), which this gate judges: set targets: [1] on the gate to judge only "
        "the others, or write the value in place of the variable"
    )
    accepted = document(targets=[API, GATEWAY], analysis=analysis(gate | {"targets": [1]}))
    assert accepted.spec.analysis.gates[0].targets == [1]


def test_a_preset_on_a_target_it_cannot_read_is_refused() -> None:
    [problem] = refused([GATEWAY, API], ERROR_RATE | {"max": 0.01})
    assert problem == (
        "spec.analysis.gates[0].preset: lambda-error-rate reads function and alias of each "
        "target it judges; targets[0] (k8s-gateway-api) has none: set targets: [1] on the "
        "gate to judge only the others"
    )


def test_a_metric_dimension_template_is_checked_on_every_target() -> None:
    role = "arn:aws:iam::123456789012:role/deployer"
    gate = {
        "name": "throttles",
        "provider": "cloudwatch",
        "metrics": {
            "t": {
                "namespace": "AWS/Lambda",
                "metric": "Throttles",
                "stat": "Sum",
                "dimensions": {"Role": "{{ role_arn }}"},
            }
        },
        "query": "t",
        "max": 1,
    }
    [problem] = refused([API | {"role_arn": role}, WORKER], gate)
    assert problem.startswith(
        "spec.analysis.gates[0].metrics.t.dimensions.Role: {{ role_arn }} has no value on "
        "targets[1] (lambda-alias)"
    )


def test_a_gate_naming_a_target_that_does_not_exist_is_refused() -> None:
    [problem] = refused([API, WORKER], ERROR_RATE | {"max": 0.01, "targets": [0, 2]})
    assert problem == "spec.analysis.gates[0].targets: no target 2: the spec has 2 (0 to 1)"


def test_an_unknown_variable_is_refused_with_what_is_known() -> None:
    gate = {"name": "x", "provider": "prometheus", "query": "up{v='{{ canary_versoin }}'}"}
    [problem] = refused([API, WORKER], gate | {"max": 1})
    assert "unknown template variable {{ canary_versoin }}; did you mean {{ canary_version }}?" in (
        problem
    )


def test_the_multi_target_example_judges_both_functions() -> None:
    doc = load_file(Path(__file__).parents[1] / "config/examples/multi-target.yaml")
    gates = {g.name: g for g in doc.spec.analysis.gates}
    assert gates["error-rate"].targets is None  # every target
    assert gates["worker-errors"].targets == [1]
    assert doc.spec.targets[1].key().endswith("/orders-worker/live")
