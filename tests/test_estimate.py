"""``canary validate --rate`` and ``canary simulate --rate``: how long the plan takes at a
stated request rate, and whether its gates can judge at all (canary/estimate.py)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import T0, document, lambda_target

from analysis.base import Measurement
from canary.cli import cli
from canary.clock import VirtualClock
from canary.engine import Engine, EngineOptions
from canary.estimate import estimate, parse_rate
from canary.events import EventKind
from canary.simulate import drive
from canary.store.memory import MemoryStore
from strategies.memory import MemoryFleet

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "config" / "examples"

LOW_TRAFFIC = """\
apiVersion: canary/v1
kind: Rollout
metadata: {name: checkout}
spec:
  targets:
    - {kind: lambda-alias, function: checkout, alias: live, version: "2"}
  analysis:
    gates:
      - {name: error-rate, provider: cloudwatch, preset: lambda-error-rate, max: 0.01,
         min_samples: 200}
"""


def doc(gate: dict[str, Any], **analysis: Any) -> Any:
    return document(
        targets=[lambda_target()],
        steps=[{"weight": 10, "bake": "5m"}, {"weight": 50, "bake": "5m"}, {"weight": 100}],
        analysis={"interval": "30s", "gates": [gate], **analysis},
    )


ERRORS = {
    "name": "errors",
    "provider": "prometheus",
    "preset": "http-error-rate",
    "max": 0.01,
    "min_samples": 100,
    "window": "10m",
}


def test_the_issues_low_traffic_service_is_told_it_cannot_be_judged(tmp_path: Path) -> None:
    """20 requests a minute at 10% is 2 a minute: a 5-minute window never holds 200."""
    spec = tmp_path / "low.yaml"
    spec.write_text(LOW_TRAFFIC)
    out = CliRunner().invoke(cli, ["validate", "-f", str(spec), "--rate", "20/min"])
    assert out.exit_code == 1, out.output
    assert "step 1: 10% (2/min to the canary): bake 5m; cannot judge by 6m30s" in out.output
    # CloudWatch's 2-minute delay: at the bake's end the window holds 3 minutes of the step.
    assert (
        "error-rate needs 200 canary request(s) in its window, has ~6 at the bake's end and ~9 "
        "at 6m30s"
    ) in out.output
    assert "plan: cannot judge at step 1; it pauses there for a person" in out.output


def test_a_bake_is_extended_until_the_samples_are_in_within_max_bake() -> None:
    # 120/min at 10% is 12 canary requests a minute; the window ends 30 s back (prometheus):
    # 100 of them are in after 8m20s + 30s, so the first look at or past it, 9m, judges.
    plan = estimate(doc(ERRORS, max_bake="15m"), parse_rate("120/min"))
    first = plan.steps[0]
    assert (first.judged, first.held, first.last_look) == (True, 540.0, 900.0)
    assert "judged at 9m, 4m after the bake's end" in first.line(plan.rate)
    assert plan.steps[1].held == 300.0, "at 50% the samples are in by the bake's end"
    assert plan.can_judge
    assert plan.total == 540 + 300


def test_without_max_bake_a_step_gets_inconclusive_limit_more_looks() -> None:
    plan = estimate(doc(ERRORS, inconclusive_limit=3), parse_rate("120/min"))
    assert plan.steps[0].last_look == 300 + 3 * 30
    assert not plan.can_judge
    assert plan.stops_at == 1


def test_a_statistical_gate_needs_enough_slices_with_traffic_in_each() -> None:
    gate = {
        "name": "latency",
        "provider": "prometheus",
        "preset": "http-p95-latency",
        "statistical": {"confidence": 0.99, "step": "1m"},
        "window": "5m",
        "delay": "0s",
    }
    busy = estimate(doc(gate), parse_rate("100/min"))
    assert busy.steps[0].judged, "5 one-minute slices with traffic at the bake's end"
    # 5/min at 10% is one canary request every 2 minutes: most slices stay empty.
    quiet = estimate(doc(gate, max_bake="30m"), parse_rate("5/min"))
    assert not quiet.can_judge
    [need] = [n for n in quiet.steps[0].needs if n.what == "values"]
    assert (need.needed, need.at_last) == (5, 0)


def test_dry_run_gates_and_unbaked_steps_are_not_counted() -> None:
    plan = estimate(doc(ERRORS | {"dry_run": True}), parse_rate("1/min"))
    assert plan.can_judge
    assert [s.judged for s in plan.steps] == [None, None, None]
    assert plan.total == 600


@pytest.mark.parametrize("text", ["20", "20/fortnight", "-3/min", "0/s", "lots"])
def test_a_rate_that_is_not_one_is_a_usage_error(text: str) -> None:
    out = CliRunner().invoke(
        cli, ["validate", "-f", str(EXAMPLES / "lambda-alias.yaml"), "--rate", text]
    )
    assert out.exit_code == 2
    assert "write it like 20/min, 0.5/s or 1200/h" in out.output


def test_rates_in_their_units() -> None:
    assert parse_rate("20/min") == pytest.approx(1 / 3)
    assert parse_rate("0.5/s") == 0.5
    assert parse_rate("1200/h") == pytest.approx(1 / 3)
    assert parse_rate("20 per minute") == pytest.approx(1 / 3)


def test_validate_json_carries_the_estimate_as_data() -> None:
    out = CliRunner().invoke(
        cli,
        [
            "validate",
            "-f",
            str(EXAMPLES / "lambda-alias.yaml"),
            "--rate",
            "6000/min",
            "--output",
            "json",
        ],
    )
    data = json.loads(out.output)
    assert data["estimate"]["can_judge"] is (out.exit_code == 0)
    assert data["estimate"]["rate_per_minute"] == pytest.approx(6000)
    assert [s["weight"] for s in data["estimate"]["steps"]][-1] == 100


def test_simulate_prints_the_same_estimate() -> None:
    spec = str(EXAMPLES / "lambda-alias.yaml")
    scenario = str(EXAMPLES / "scenarios" / "healthy.yaml")
    validated = CliRunner().invoke(cli, ["validate", "-f", spec, "--rate", "600/min"])
    simulated = CliRunner().invoke(
        cli, ["simulate", "-f", spec, "--scenario", scenario, "--rate", "600/min"]
    )
    estimate_lines = validated.output[validated.output.index("estimate at") :]
    assert estimate_lines in simulated.output


# ---------------------------------------------------------------- against the engine


class SteadyTraffic:
    """A provider answering what a steady request rate gives: the canary's requests in the
    window, from the weights the rollout's own ``traffic.shifted`` events record."""

    kind = "prometheus"

    def __init__(self, rate: float, store: Any) -> None:
        self.rate = rate
        self.store = store
        self.rollout_id = ""

    async def health(self) -> None:
        return None

    async def query(self, queries: Any, window: Any) -> list[Measurement]:
        events = await self.store.events(self.rollout_id)
        shifts = [
            (e.at, float(e.data["weight"])) for e in events if e.kind == EventKind.TRAFFIC_SHIFTED
        ]
        bounds = [*shifts, (window.end, 0.0)]
        answers = []
        for q in queries:
            requests = 0.0
            for (start, weight), (end, _) in itertools.pairwise(bounds):
                lo, hi = max(start, window.start), min(end, window.end)
                if hi > lo:
                    share = weight / 100 if q.side == "canary" else 1 - weight / 100
                    requests += self.rate * share * (hi - lo).total_seconds()
            answers.append(Measurement(0.001 if requests else None, requests))
        return answers


async def run_at(rate: float, document_: Any) -> list[Any]:
    store = MemoryStore()
    clock = VirtualClock(T0)
    provider = SteadyTraffic(rate, store)
    engine = Engine(
        store, clock, MemoryFleet(stable="1").factory, {"prometheus": provider},
        options=EngineOptions(step_retry=1.0),
    )  # fmt: skip
    await engine.start()
    r = await engine.submit(document_, actor="ci")
    provider.rollout_id = r.id
    await drive(engine, clock)
    await engine.stop()
    return list(await store.events(r.id))


@pytest.mark.parametrize("rate", ["120/min", "600/min", "20/min"])
async def test_the_estimate_is_what_the_engine_does_on_that_traffic(rate: str) -> None:
    """The machine's own schedule on virtual time, with a provider that counts the requests
    a steady rate gives: each step takes what the estimate says, and stops where it says."""
    spec = doc(ERRORS, max_bake="15m")
    plan = estimate(spec, parse_rate(rate))
    events = await run_at(parse_rate(rate), spec)
    shifted = [e.at for e in events if e.kind == EventKind.TRAFFIC_SHIFTED]
    held = [(b - a).total_seconds() for a, b in itertools.pairwise(shifted)]
    if plan.can_judge:
        assert held == [s.held for s in plan.steps if s.bake]
        assert events[-1].kind == EventKind.ROLLOUT_SUCCEEDED
    else:
        paused = next(e for e in events if e.kind == EventKind.ROLLOUT_PAUSED)
        assert plan.stops_at == len(shifted)
        stuck = plan.steps[len(shifted) - 1]
        assert (paused.at - shifted[-1]).total_seconds() == stuck.held == stuck.last_look
