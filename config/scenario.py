"""Scenario files for ``canary simulate``: what the metrics do, and what people do, over time.

A scenario lets a user dry-run a policy before trusting it with traffic: "what does this
spec do if the error rate jumps to 5% at 25%?" Values are numbers or small expressions of
``t`` (seconds since the rollout started), ``minutes``, ``weight`` (the canary's percent)
and ``step`` (1-based); a list of values takes the first whose ``when`` holds. Hooks are
scripted the same way: ``hooks: {smoke: pass, e2e: [{when: "weight >= 50", answer: fail}]}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator

from config.durations import Duration
from config.errors import SpecError, problems_from_validation
from config.expressions import ExpressionError, compile_expression
from config.spec import read_source
from config.targets import StrictModel

Number = float | str


def _check_expression(value: Any) -> Any:
    if isinstance(value, str):
        try:
            compile_expression(value)
        except ExpressionError as exc:
            raise ValueError(str(exc)) from None
    return value


class Point(StrictModel):
    """One value of a metric; ``value: null`` is "no data", ``error`` a provider failure."""

    when: str | None = None
    value: Number | None = None
    samples: Number | None = None
    error: str | None = None

    _expressions = field_validator("when", "value", "samples")(_check_expression)

    @model_validator(mode="before")
    @classmethod
    def _bare_number(cls, data: Any) -> Any:
        return {"value": data} if isinstance(data, int | float | str) else data


Points = Annotated[list[Point], BeforeValidator(lambda v: v if isinstance(v, list) else [v])]


class GateScript(StrictModel):
    canary: Points
    stable: Points | None = None


class ScenarioCommand(StrictModel):
    at: Duration = Field(description="time since the rollout started")
    command: Literal["promote", "pause", "resume", "abort"]
    full: bool = False
    reason: str | None = None
    actor: str = "scenario"


class ScenarioDrift(StrictModel):
    """Someone edits a target by hand: it now sends ``weight``% to ``version``."""

    at: Duration
    target: int = Field(default=0, ge=0, description="index into spec.targets")
    version: str = Field(default="hand-edit", description="the version it now routes to")
    weight: float = Field(default=50.0, ge=0, le=100)


class HookPoint(StrictModel):
    """One scripted answer of a hook; the first whose ``when`` holds is given."""

    when: str | None = None
    answer: Literal["pass", "fail", "error", "timeout", "inconclusive"] = "pass"
    message: str | None = Field(default=None, max_length=500, description="why, in words")
    status: int | None = Field(default=None, ge=100, le=599, description="the HTTP status shown")

    _expressions = field_validator("when")(_check_expression)

    @model_validator(mode="before")
    @classmethod
    def _bare_answer(cls, data: Any) -> Any:
        return {"answer": data} if isinstance(data, str) else data


HookPoints = Annotated[
    list[HookPoint], BeforeValidator(lambda v: v if isinstance(v, list) else [v])
]


class Scenario(StrictModel):
    description: str = ""
    stable_version: str = Field(default="stable", description="what every target serves first")
    metrics: dict[str, GateScript] = Field(default_factory=dict, description="by gate name")
    hooks: dict[str, HookPoints] = Field(
        default_factory=dict, description="answers by hook name; a hook not named passes"
    )
    commands: list[ScenarioCommand] = Field(default_factory=list)
    drift: list[ScenarioDrift] = Field(default_factory=list)
    max_duration: Duration = Field(default=86400.0, description="stop the simulation after")


def load_scenario(path: str | Path) -> Scenario:
    data = read_source(path)
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise SpecError(problems_from_validation(exc)) from None
