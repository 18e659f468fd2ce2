"""A metric provider whose answers come from a script: a scenario file or a function.

It stands in for CloudWatch and Prometheus in ``canary simulate`` and in the engine's tests,
so the judges and the gate policy run for real on values that are known in advance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import ClassVar

from analysis.base import Measurement, MetricQuery, ProviderError, Window
from config.expressions import compile_expression, evaluate
from config.scenario import GateScript, Point, Scenario

Script = Callable[[MetricQuery], Measurement | ProviderError]


def _number(value: float | str | None, names: dict[str, float]) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        return evaluate(compile_expression(value), names)
    return float(value)


def _pick(points: list[Point], names: dict[str, float]) -> Point | None:
    for point in points:
        if point.when is None or evaluate(compile_expression(point.when), names):
            return point
    return None


def from_scenario(scenario: Scenario) -> Script:
    """Answers from a scenario's ``metrics``, keyed by gate name."""

    def answer(query: MetricQuery) -> Measurement | ProviderError:
        script: GateScript | None = scenario.metrics.get(query.gate)
        if script is None:
            return Measurement(None, detail={"why": f"the scenario has no values for {query.gate}"})
        points = script.canary if query.side == "canary" else script.stable
        if points is None:
            return Measurement(None, detail={"why": "the scenario has no stable values"})
        names = {
            "t": query.elapsed,
            "minutes": query.elapsed / 60,
            "weight": query.weight,
            "step": float(query.variables.get("step", "0")),
        }
        point = _pick(points, names)
        if point is None:
            return Measurement(None, detail={"why": "no value's 'when' held"})
        if point.error is not None:
            return ProviderError(point.error)
        return Measurement(_number(point.value, names), _number(point.samples, names))

    return answer


class ScriptedProvider:
    kind: ClassVar[str] = "scripted"

    def __init__(self, script: Script) -> None:
        self.script = script
        self.queries: list[tuple[MetricQuery, Window]] = []
        self.down: str | None = None  # set to make health() fail with this reason
        # A scenario gives one value per window: read it as that value all through the window
        # when a check asks for the values over it.
        self.flat_series = False

    @classmethod
    def from_scenario(cls, scenario: Scenario) -> ScriptedProvider:
        provider = cls(from_scenario(scenario))
        provider.flat_series = True
        return provider

    async def health(self) -> None:
        if self.down is not None:
            raise ProviderError(self.down)

    async def query(
        self, queries: Sequence[MetricQuery], window: Window
    ) -> Sequence[Measurement | ProviderError]:
        self.queries.extend((q, window) for q in queries)
        answers = [self.script(q) for q in queries]
        if self.flat_series:
            answers = [_flat(a, q, window) for a, q in zip(answers, queries, strict=True)]
        return answers


def _flat(
    answer: Measurement | ProviderError, query: MetricQuery, window: Window
) -> Measurement | ProviderError:
    if not isinstance(answer, Measurement) or answer.value is None or answer.values:
        return answer
    if not query.series_step:
        return answer
    count = max(1, int(window.seconds // query.series_step))
    return replace(answer, values=(answer.value,) * count)
