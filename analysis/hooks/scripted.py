"""Hook answers from a script: a scenario's ``hooks`` for ``canary simulate``.

Stands in for every hook kind, so a dry run shows where each hook runs and what its
answer does to the rollout (the same counting and limits as the daemon's), without
calling anything. A hook the scenario does not name passes.
"""

from __future__ import annotations

from typing import Any

from analysis.base import Verdict
from analysis.hooks.kind import HookAnswer, HookCall, HookError
from config.expressions import compile_expression, evaluate
from config.scenario import HookPoint, Scenario

VERDICTS = {"pass": Verdict.PASS, "fail": Verdict.FAIL, "inconclusive": Verdict.INCONCLUSIVE}


class ScriptedHooks:
    """A caller for every hook kind, answering from ``scenario.hooks``."""

    def __init__(self, scenario: Scenario) -> None:
        self.script = scenario.hooks
        self.calls: list[tuple[str, HookCall]] = []

    def _pick(self, name: str, call: HookCall) -> HookPoint | None:
        names = {
            "t": call.elapsed,
            "minutes": call.elapsed / 60,
            "weight": call.weight,
            "step": float(call.step),
        }
        for point in self.script.get(name, []):
            if point.when is None or evaluate(compile_expression(point.when), names):
                return point
        return None

    async def call(self, hook: Any, call: HookCall) -> HookAnswer:
        self.calls.append((hook.name, call))
        point = self._pick(hook.name, call)
        if point is None:
            return HookAnswer(Verdict.PASS, "passed (the scenario does not script it)")
        said = f": {point.message}" if point.message else ""
        detail: dict[str, Any] = {"scripted": True}
        if point.status is not None:
            detail["status"] = point.status
        if point.answer == "timeout":
            raise HookError(f"no answer within {hook.timeout:g}s (timeout, scripted)", detail)
        if point.answer == "error":
            raise HookError(f"could not be asked (scripted){said}", detail)
        verdict = VERDICTS[point.answer]
        return HookAnswer(verdict, f"answered {point.answer} (scripted){said}", detail)
