"""The Rollout spec: what a user writes to ask for a progressive delivery.

Validation is the user's first contact with canary, so every problem in a document is
reported at once, each with its path and what to do about it, and nothing is ever guessed:
an unknown field, kind or provider is an error, not a default.

What varies by kind of target or by metric provider is not written here: the union of
targets, a gate's providers and presets come from the declarations registered in
``strategies/registry.py`` and ``analysis/registry.py``, so this module sits above the kind
and provider modules (docs/architecture.md, "Layout and dependencies").
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from analysis import cloudwatch
from analysis.cloudwatch import CloudWatchMetric
from analysis.hooks.kind import GATE_POINTS
from analysis.hooks.registry import BY_NAME as HOOK_KINDS
from analysis.hooks.registry import HookSpecUnion
from analysis.prometheus import PresetOptions
from analysis.registry import BY_NAME as PROVIDER_KINDS
from analysis.registry import provider_names
from config import metricmath, shape
from config.durations import (
    Bake,
    Delay,
    Interval,
    StatisticalStep,
    Warmup,
    Window,
    format_duration,
)
from config.errors import Problem, SpecError, problems_from_validation, shown
from config.targets import StrictModel
from config.templates import ALWAYS, TemplateError, names_in, target_variables
from strategies.registry import KINDS, CanonicalError, Clients, TargetSpec
from strategies.registry import canonical as canonical_target

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

PROVIDERS: tuple[str, ...] = provider_names()
"""The metric providers a gate may name (declared in ``analysis/registry.py``)."""

if TYPE_CHECKING:
    ProviderName = str
else:
    ProviderName = Literal[PROVIDERS]


def presets_of(provider: str) -> tuple[str, ...]:
    return tuple(p.name for p in PROVIDER_KINDS[provider].presets)


def _name(value: str) -> str:
    if len(value) > 63 or not _NAME.match(value):
        raise PydanticCustomError(
            "name",
            "{value} is not a valid name; use 1-63 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit",
            {"value": repr(value)},
        )
    return value


Name = Annotated[
    str,
    AfterValidator(_name),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 63, "pattern": _NAME.pattern}),
]


def _has(field: str) -> dict[str, Any]:
    """JSON Schema: ``field`` is given and not null (null means absent to canary)."""
    return {"required": [field], "properties": {field: {"not": {"type": "null"}}}}


def _provider_is(provider: str) -> dict[str, Any]:
    return {"required": ["provider"], "properties": {"provider": {"const": provider}}}


def problems(*items: tuple[tuple[str | int, ...], str]) -> PydanticCustomError:
    """One error that carries several located problems (see ``config.errors``)."""
    return PydanticCustomError(
        "spec_problems",
        "; ".join(message for _, message in items),
        {"problems": [(list(path), message) for path, message in items]},
    )


def _weight(value: float) -> float:
    if not 0 < value <= 100:  # NaN is out of range too
        raise PydanticCustomError(
            "weight_range",
            "{value} is out of range; a weight is the canary's share of traffic in percent, "
            "above 0 and at most 100",
            {"value": f"{value:g}"},
        )
    return value


# A real number: strict, so `weight: true` or `weight: "10"` is an error, not 1% or 10%.
Weight = Annotated[
    float,
    Field(strict=True),
    AfterValidator(_weight),
    WithJsonSchema(
        {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 100,
            "description": "the canary's share of traffic, in percent",
        }
    ),
]


# Counts of evaluations tolerated: whole numbers (never true/false), bounded.
def _whole(value: Any) -> Any:
    # JSON Schema's integer includes 3.0: the same whole number. Text and booleans stay
    # refused (the field is strict).
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


Limit = Annotated[int, Field(strict=True, ge=0, le=1000), BeforeValidator(_whole)]
# A real number a gate compares with: finite, never a boolean.
Threshold = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Percent = Annotated[float, Field(strict=True, ge=0, le=1_000_000, allow_inf_nan=False)]
Flag = Annotated[bool, Field(strict=True)]
TargetIndex = Annotated[int, Field(strict=True, ge=0, le=49), BeforeValidator(_whole)]


class Step(StrictModel):
    weight: Weight
    bake: Bake = Field(default=0.0, description="how long to hold the weight; 0s to 7 days")
    approval: Flag = Field(default=False, description="wait for a promote after the bake")
    max_bake: Bake | None = Field(
        default=None,
        description="extend the bake while gates lack samples, up to this; then "
        "on_inconclusive; 0s to 7 days; default analysis.max_bake",
    )


def default_steps() -> list[Step]:
    """10% for 5m, 25% for 10m, 50% for 15m, then 100%."""
    return [
        Step(weight=10, bake=300),
        Step(weight=25, bake=600),
        Step(weight=50, bake=900),
        Step(weight=100),
    ]


class Relative(StrictModel):
    """Canary against stable: fail when the canary is higher by more than allowed."""

    # Give one or both (as Gate._comparison_problems says).
    model_config = StrictModel.model_config | {
        "json_schema_extra": {"anyOf": [_has("max_increase_percent"), _has("max_increase")]}
    }

    max_increase_percent: Percent | None = Field(
        default=None, description="allowed increase over stable, in %"
    )
    max_increase: Annotated[Threshold, Field(ge=0)] | None = Field(
        default=None, description="allowed increase, in the unit"
    )


class Statistical(StrictModel):
    """Mann-Whitney U: are the canary's values higher than the stable's, beyond chance?"""

    confidence: float = Field(
        default=0.99,
        strict=True,
        gt=0.5,
        le=0.9999,
        description="fail only when this sure the canary is higher",
    )
    min_increase_percent: Percent = Field(
        default=10.0,
        description="effect-size floor: the canary's median must also be this much higher",
    )
    step: StatisticalStep = Field(
        default=60.0, description="one value per step of the window, for each version; 1s to 1h"
    )


def significance(confidence: float) -> float:
    """The p-value a test must stay below: 0.05 for confidence 0.95 (float noise removed)."""
    return round(1 - confidence, 10)


def values_needed(confidence: float) -> int:
    """Fewest values per version with which Mann-Whitney can reach ``confidence`` at all.

    With n values each, the smallest one-sided p-value is 1 / C(2n, n) (complete separation).
    """
    n = 1
    while 1 / math.comb(2 * n, n) >= significance(confidence):
        n += 1
    return n


def _gate_rules(schema: dict[str, Any]) -> None:
    """The rules across a gate's fields that JSON Schema can state, as ``Gate._check`` and
    ``_metric_problems`` enforce them; min <= max, enough statistical steps in the window,
    the metric ids a query uses and template variables are canary's alone."""
    rules: list[dict[str, Any]] = [
        {"oneOf": [_has("query"), _has("preset")]},
        {"anyOf": [_has("max"), _has("min"), _has("relative"), _has("statistical")]},
        {
            "if": {"allOf": [_has("query"), {"anyOf": [_has("relative"), _has("statistical")]}]},
            "then": _has("stable_query"),
        },
        {
            "if": _has("preset_options"),
            "then": {"allOf": [_provider_is("prometheus"), _has("preset")]},
        },
        {
            "if": _has("metrics"),
            "then": {"allOf": [_provider_is("cloudwatch"), {"not": _has("preset")}]},
        },
        {"if": _has("preset"), "then": {"not": _has("samples_query")}},
        {
            "if": {
                "allOf": [
                    _provider_is("prometheus"),
                    _has("query"),
                    {
                        "required": ["min_samples"],
                        "properties": {"min_samples": {"exclusiveMinimum": 0}},
                    },
                ]
            },
            "then": _has("samples_query"),
        },
    ]
    for provider in PROVIDER_KINDS:
        rules.append(
            {
                "if": _provider_is(provider),
                "then": {"properties": {"preset": {"enum": [*presets_of(provider), None]}}},
            }
        )
    schema["allOf"] = rules
    for option in schema["properties"]["metrics"]["anyOf"]:
        if option.get("type") == "object":  # ids canary refuses are not allowed either
            option["additionalProperties"] = False


MetricId = Annotated[
    str, WithJsonSchema({"type": "string", "pattern": f"^{metricmath.ID_PATTERN}$"})
]


class Gate(StrictModel):
    """One metric check, judged at every analysis interval during a bake."""

    model_config = StrictModel.model_config | {"json_schema_extra": _gate_rules}

    name: Name
    provider: ProviderName
    query: str | None = Field(default=None, min_length=1)
    stable_query: str | None = Field(
        default=None, min_length=1, description="the same metric for the stable version"
    )
    preset: str | None = None
    max: Threshold | None = None
    min: Threshold | None = None
    min_samples: Annotated[int, BeforeValidator(_whole)] = Field(
        default=0, strict=True, ge=0, le=10**12, description="fewer samples: INCONCLUSIVE"
    )
    window: Window = Field(default=300.0, description="how far back each query looks; 1s to 1d")
    delay: Delay | None = Field(
        default=None,
        description="how late the metrics arrive: each window ends this long before now; "
        "0s to 1h; default: the provider's (cloudwatch 2m, prometheus 30s)",
    )
    metrics: dict[MetricId, CloudWatchMetric] | None = Field(
        default=None,
        description="cloudwatch: metric stats, by id, that query, stable_query and "
        "samples_query use as metric math",
    )
    samples_query: str | None = Field(
        default=None,
        min_length=1,
        description="how many requests (or invocations) the canary's value rests on; "
        "min_samples needs it for your own query",
    )
    relative: Relative | None = Field(default=None, description="compare with the stable")
    statistical: Statistical | None = Field(
        default=None, description="Mann-Whitney U of canary against stable values"
    )
    preset_options: PresetOptions | None = Field(
        default=None, description="metric and label names for the prometheus presets"
    )
    dry_run: Flag = Field(
        default=False,
        description="evaluated, recorded and shown, never counted toward a limit or a decision",
    )
    targets: list[TargetIndex] | None = Field(
        default=None,
        min_length=1,
        max_length=50,
        description="the targets this gate judges, by index in spec.targets (0 is the "
        "first); default every target, each judged on its own",
    )

    @model_validator(mode="after")
    def _check(self) -> Gate:
        found: list[tuple[tuple[str | int, ...], str]] = self._metric_problems()
        if (self.query is None) == (self.preset is None):
            found.append(
                (
                    ("query",),
                    "give exactly one of query (your own expression) or preset "
                    f"(one of {', '.join(presets_of(self.provider))})",
                )
            )
        if self.preset is not None and self.preset not in presets_of(self.provider):
            found.append(
                (
                    ("preset",),
                    f"unknown {self.provider} preset {self.preset!r}; expected one of "
                    f"{', '.join(presets_of(self.provider))}",
                )
            )
        if (self.max, self.min, self.relative, self.statistical) == (None, None, None, None):
            found.append(
                (("max",), "a gate needs a check: set max, min (or both), relative or statistical")
            )
        found += self._comparison_problems()
        if self.preset_options is not None and (
            self.provider != "prometheus" or self.preset is None
        ):
            found.append(
                (
                    ("preset_options",),
                    "applies to the prometheus presets only "
                    f"({', '.join(presets_of('prometheus'))}); remove it",
                )
            )
        if (
            self.provider == "prometheus"
            and self.query is not None
            and self.min_samples
            and self.samples_query is None
        ):
            found.append(
                (
                    ("samples_query",),
                    f"min_samples {self.min_samples} needs a sample count: add samples_query, "
                    'e.g. sum(increase(http_requests_total{version="{{ canary_version }}"}'
                    "[{{ window }}])), or set min_samples to 0",
                )
            )
        if self.max is not None and self.min is not None and self.min > self.max:
            found.append(
                (("min",), f"min {self.min:g} is above max {self.max:g}; no value could pass")
            )
        if found:
            raise problems(*found)
        return self

    def _metric_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        found: list[tuple[tuple[str | int, ...], str]] = []
        if self.samples_query is not None and self.preset is not None:
            found.append(
                (("samples_query",), "a preset counts its own samples; remove samples_query")
            )
        if self.metrics is None:
            return found
        if self.provider != "cloudwatch":
            found.append((("metrics",), "metrics are for the cloudwatch provider only"))
            return found
        if self.preset is not None:
            found.append((("metrics",), "metrics are for your own query; a preset has its own"))
        for name in self.metrics:
            if not metricmath.valid_id(name):
                found.append(
                    (
                        ("metrics", name),
                        f"{name!r} is not an id CloudWatch accepts; start with a lower-case "
                        "letter, then letters, digits and _",
                    )
                )
        defined = ", ".join(self.metrics) or "none"
        for field in ("query", "stable_query", "samples_query"):
            expression = getattr(self, field)
            for name in metricmath.ids_in(expression or ""):
                if name not in self.metrics:
                    found.append(
                        (
                            (field,),
                            f"uses {name!r}, which is not one of the metrics (defined: "
                            f"{defined}); define it under metrics or fix the name",
                        )
                    )
        return found

    def _comparison_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Relative and statistical checks need the stable side and enough values."""
        found: list[tuple[tuple[str | int, ...], str]] = []
        for name, block in (("relative", self.relative), ("statistical", self.statistical)):
            if block is not None and self.query is not None and self.stable_query is None:
                found.append(
                    (
                        ("stable_query",),
                        f"{name} compares with the stable version: add stable_query, your "
                        "query with {{ stable_version }} in place of {{ canary_version }}",
                    )
                )
        if self.relative is not None and (
            self.relative.max_increase_percent is None and self.relative.max_increase is None
        ):
            found.append(
                (
                    ("relative", "max_increase_percent"),
                    "set max_increase_percent, max_increase, or both (the larger allowance wins)",
                )
            )
        if self.statistical is not None and not PROVIDER_KINDS[self.provider].series:
            others = [p.name for p in PROVIDER_KINDS.values() if p.series]
            found.append(
                (
                    ("statistical",),
                    f"gate {self.name!r}: the {self.provider} provider gives one value per "
                    "window, not the values over it that a statistical check compares; use "
                    "relative (canary against stable) on this gate, or a statistical check on "
                    f"a {' or '.join(others) or 'other'} gate",
                )
            )
        stat = self.statistical
        if (
            stat is not None
            and self.provider == "cloudwatch"
            and not cloudwatch.valid_period(max(stat.step, 60.0) if self.preset else stat.step)
        ):
            found.append(
                (
                    ("statistical", "step"),
                    f"{format_duration(stat.step)} is not a CloudWatch period: the values over "
                    "the window are asked one period apart, and GetMetricData takes 1s, 5s, "
                    "10s, 30s or a multiple of 1m (Lambda's metrics: a multiple of 1m)",
                )
            )
        elif stat is not None and self.preset and self.provider == "cloudwatch" and stat.step < 60:
            found.append(
                (
                    ("statistical", "step"),
                    f"{format_duration(stat.step)}: Lambda keeps {self.preset}'s metrics per "
                    "minute; use a step of 1m or a multiple of it",
                )
            )
        if stat is not None and self.window > 0:
            needed = values_needed(stat.confidence)
            have = int(self.window // stat.step) if stat.step > 0 else 0
            if have < needed:
                found.append(
                    (
                        ("statistical", "step"),
                        f"a window of {format_duration(self.window)} in steps of "
                        f"{format_duration(stat.step)} gives {have} value(s) per version; "
                        f"Mann-Whitney needs {needed} for confidence {stat.confidence:g}: "
                        "shorten step or lengthen window",
                    )
                )
        return found

    def templates(self) -> dict[str, str]:
        """Every field of this gate that is a query template, by field path."""
        found = {
            name: text
            for name in ("query", "stable_query", "samples_query")
            if (text := getattr(self, name)) is not None
        }
        if self.preset_options is not None and self.preset_options.selector is not None:
            found["preset_options.selector"] = self.preset_options.selector
        for name, metric in (self.metrics or {}).items():  # the provider renders these too
            for part in ("namespace", "metric", "stat"):
                found[f"metrics.{name}.{part}"] = getattr(metric, part)
            for dimension, value in metric.dimensions.items():
                found[f"metrics.{name}.dimensions.{dimension}"] = value
        return found


def gate_variables(gate: Gate) -> set[str]:
    """The template variables ``gate`` reads: its templates', and its preset's."""
    names: set[str] = set()
    for text in gate.templates().values():
        try:
            names.update(names_in(text))
        except TemplateError:  # refused when the spec is read
            continue
    declared = PROVIDER_KINDS[gate.provider].preset(gate.preset) if gate.preset else None
    if declared is not None:
        names.update(("canary_version", "stable_version", *declared.needs))
    return names


class Analysis(StrictModel):
    interval: Interval = Field(
        default=30.0, description="how often gates run during a bake; 1s to 1h"
    )
    gates: list[Gate] = Field(default_factory=list, max_length=50)
    failure_limit: Limit = Field(default=1, description="failed evaluations tolerated")
    inconclusive_limit: Limit = Field(default=3, description="inconclusive ones tolerated")
    consecutive_error_limit: Limit = Field(
        default=10, description="provider errors in a row tolerated; then rollback"
    )
    on_inconclusive: Literal["pause", "rollback", "continue"] = "pause"
    max_bake: Bake | None = Field(
        default=None,
        description="every step's max_bake unless the step gives its own; 0s to 7 days",
    )
    warmup: Warmup = Field(
        default=60.0,
        description="evaluations in the first part of each step's bake are recorded, not "
        "counted; 0s to 1h",
    )
    on_failure: Literal["rollback", "pause"] = Field(
        default="rollback",
        description="beyond failure_limit: roll back, or pause for a person to judge",
    )

    @field_validator("gates")
    @classmethod
    def _unique_names(cls, gates: list[Gate]) -> list[Gate]:
        seen: dict[str, int] = {}
        found: list[tuple[tuple[str | int, ...], str]] = []
        for index, gate in enumerate(gates):
            if gate.name in seen:
                found.append(
                    (
                        (index, "name"),
                        f"{gate.name!r} is already the name of gates[{seen[gate.name]}]; "
                        "gate names must be unique",
                    )
                )
            seen.setdefault(gate.name, index)
        if found:
            raise problems(*found)
        return gates


SLACK_CHANNEL = r"^(#[a-z0-9_-]{1,80}|[CGD][A-Z0-9]{2,20})$"


class SlackNotify(StrictModel):
    """Post this rollout to Slack: one message kept up to date, and a thread of its events."""

    channel: str | None = Field(
        default=None,
        json_schema_extra={"pattern": SLACK_CHANNEL},
        description="#channel-name or a channel id (C0123ABC); default: CANARY_SLACK_CHANNEL",
    )

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is not None and not re.match(SLACK_CHANNEL, value):
            raise ValueError(
                f"{value!r} is not a Slack channel; give #name (lower case, digits, - and _) "
                "or a channel id such as C0123ABCD"
            )
        return value


class Notify(StrictModel):
    """Where a rollout's events are sent, besides the log and the API's event streams.

    With Slack configured (``CANARY_SLACK_BOT_TOKEN``) every rollout is posted to the default
    channel; ``notify.slack.channel`` picks another one for this rollout.
    """

    slack: SlackNotify | None = None


class RolloutSpec(StrictModel):
    targets: list[TargetSpec] = Field(min_length=1, max_length=50)
    steps: list[Step] = Field(default_factory=default_steps, min_length=1, max_length=100)
    analysis: Analysis = Field(default_factory=Analysis)
    notify: Notify = Field(default_factory=Notify)
    hooks: list[HookSpecUnion] = Field(
        default_factory=list,
        max_length=50,
        description="tests and alarms asked at points of the rollout (README, Hooks)",
    )

    @field_validator("steps")
    @classmethod
    def _increasing_to_100(cls, steps: list[Step]) -> list[Step]:
        found: list[tuple[tuple[str | int, ...], str]] = []
        for index in range(1, len(steps)):
            previous, weight = steps[index - 1].weight, steps[index].weight
            if weight <= previous:
                found.append(
                    (
                        (index, "weight"),
                        f"{weight:g} is not above the previous step's {previous:g}; "
                        "weights must increase from step to step",
                    )
                )
        if steps and steps[-1].weight != 100:
            found.append(
                (
                    (len(steps) - 1, "weight"),
                    f"the last step must be 100, not {steps[-1].weight:g}; "
                    "add a final step {weight: 100}",
                )
            )
        if found:
            raise problems(*found)
        return steps

    @field_validator("targets")
    @classmethod
    def _distinct_targets(cls, targets: list[TargetSpec]) -> list[TargetSpec]:
        seen: dict[str, int] = {}
        found: list[tuple[tuple[str | int, ...], str]] = []
        for index, target in enumerate(targets):
            key = target.key()
            if key in seen:
                found.append(
                    ((index,), f"the same traffic as targets[{seen[key]}] ({key}); remove one")
                )
            seen.setdefault(key, index)
        if found:
            raise problems(*found)
        return targets

    @model_validator(mode="after")
    def _hooks_fit_the_plan(self) -> RolloutSpec:
        """Hook names unique (with the gates'), a step hook's weight one of the steps',
        step-only fields only at a step, and alarm gates only where an answer decides."""
        found: list[tuple[tuple[str | int, ...], str]] = []
        taken = {g.name: "a gate" for g in self.analysis.gates}
        weights = [s.weight for s in self.steps]
        for index, hook in enumerate(self.hooks):
            at: tuple[str | int, ...] = ("hooks", index)
            if hook.name in taken:
                found.append(
                    (
                        (*at, "name"),
                        f"{hook.name!r} is already the name of {taken[hook.name]}; hook and "
                        "gate names must be unique (verdicts are recorded by name)",
                    )
                )
            taken.setdefault(hook.name, f"hooks[{index}]")
            if hook.point != "step":
                for field_name in ("weight", "run"):
                    if getattr(hook, field_name) is not None:
                        found.append(
                            (
                                (*at, field_name),
                                f"applies to point step only, not {hook.point}; remove it",
                            )
                        )
            elif hook.weight is not None and hook.weight not in weights:
                listed = ", ".join(f"{w:g}" for w in weights)
                found.append(
                    (
                        (*at, "weight"),
                        f"no step has weight {hook.weight:g}; give one of {listed}, or omit "
                        "weight to run at every step",
                    )
                )
            if HOOK_KINDS[hook.kind].gate_only and hook.point not in GATE_POINTS:
                found.append(
                    (
                        (*at, "point"),
                        f"a {hook.kind} hook is a gate; give point pre-rollout, step or "
                        f"pre-promotion, not {hook.point}",
                    )
                )
        if found:
            raise problems(*found)
        return self

    @model_validator(mode="after")
    def _known_template_variables(self) -> RolloutSpec:
        """A gate reading a variable that one of its targets lacks is refused now, not
        mid-rollout: each gate is judged on every target it names (all by default)."""
        known = [set(ALWAYS) | set(target_variables(t)) for t in self.targets]
        found: list[tuple[tuple[str | int, ...], str]] = []
        for index, gate in enumerate(self.analysis.gates):
            where: tuple[str | int, ...] = ("analysis", "gates", index)
            judged = list(range(len(self.targets))) if gate.targets is None else gate.targets
            outside = sorted({i for i in judged if i >= len(self.targets)})
            if outside:
                found.append(
                    (
                        (*where, "targets"),
                        f"no target {', '.join(map(str, outside))}: the spec has "
                        f"{len(self.targets)} (0 to {len(self.targets) - 1})",
                    )
                )
                continue
            for field_path, text in gate.templates().items():
                path = (*where, *field_path.split("."))
                try:
                    names = names_in(text)
                except TemplateError as exc:
                    found.append((path, str(exc)))
                    continue
                problem = self._missing_on(names, judged, known)
                if problem:
                    found.append((path, problem))
            declared = PROVIDER_KINDS[gate.provider].preset(gate.preset) if gate.preset else None
            if declared is not None and declared.needs:
                lacking = [i for i in judged if not set(declared.needs) <= known[i]]
                if lacking:
                    found.append(
                        (
                            (*where, "preset"),
                            f"{gate.preset} reads {' and '.join(declared.needs)} of each "
                            f"target it judges; {self._named(lacking)} "
                            f"{'has' if len(lacking) == 1 else 'have'} none: "
                            f"{self._fix(judged, lacking)}",
                        )
                    )
        if found:
            raise problems(*found)
        return self

    def _named(self, indexes: Sequence[int]) -> str:
        return ", ".join(f"targets[{i}] ({self.targets[i].kind})" for i in indexes)

    def _fix(self, judged: Sequence[int], lacking: Sequence[int]) -> str:
        rest = [i for i in judged if i not in lacking]
        if rest:
            shown = ", ".join(map(str, rest))
            return f"set targets: [{shown}] on the gate to judge only the others"
        return "use a provider or preset that fits these targets"

    def _missing_on(
        self, names: Sequence[str], judged: Sequence[int], known: Sequence[set[str]]
    ) -> str | None:
        """Why ``names`` cannot be filled in on every judged target, or None."""
        everywhere = set.union(*known)
        unknown = [n for n in names if n not in everywhere]
        if unknown:
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, sorted(everywhere), n=1)
                hints += [f"did you mean {{{{ {close[0]} }}}}? "] if close else []
            shown = ", ".join(f"{{{{ {name} }}}}" for name in unknown)
            return (
                f"unknown template variable {shown}; {''.join(hints)}known: "
                f"{', '.join(sorted(everywhere))}"
            )
        for name in names:
            lacking = [i for i in judged if name not in known[i]]
            if lacking:
                return (
                    f"{{{{ {name} }}}} has no value on {self._named(lacking)}, which this gate "
                    f"judges: {self._fix(judged, lacking)}, or write the value in place of "
                    "the variable"
                )
        return None


LabelKey = Annotated[str, Field(min_length=1, max_length=63)]
LabelValue = Annotated[str, Field(max_length=253)]


class Metadata(StrictModel):
    name: Name
    build: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="CI build id; doubles as idempotency key",
    )
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, max_length=64, description="free-form; at most 64"
    )


class RolloutDocument(StrictModel):
    """A whole rollout document: ``apiVersion``, ``kind``, ``metadata`` and ``spec``."""

    api_version: Literal["canary/v1"] = Field(alias="apiVersion")
    kind: Literal["Rollout"]
    metadata: Metadata
    spec: RolloutSpec

    # Written as users write it (apiVersion), so a stored document reads back the same.
    model_config = StrictModel.model_config | {"serialize_by_alias": True}

    def to_data(self) -> dict[str, Any]:
        """The document as plain data, durations in their short form."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def describe_plan(self) -> str:
        parts = []
        for step in self.spec.steps:
            text = f"{step.weight:g}%"
            if step.bake:
                text += f" ({format_duration(step.bake)})"
            if step.approval:
                text += " [approval]"
            parts.append(text)
        return " → ".join(parts)


def parse_document(data: Any) -> RolloutDocument:
    """Validate already-parsed data; raises ``SpecError`` listing every problem."""
    if not isinstance(data, Mapping):
        raise SpecError(
            [Problem("", "a rollout document is a mapping with apiVersion, kind, metadata, spec")]
        )
    try:
        return RolloutDocument.model_validate(data)
    except ValidationError as exc:
        raise SpecError(problems_from_validation(exc)) from None


def parse_text(text: str, source: str = "<spec>") -> RolloutDocument:
    """Parse YAML or JSON text (JSON is tried first when the text looks like JSON)."""
    return parse_document(load_data(text, source))


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice (the second would silently win), and
    nodes nested deeper than ``shape.MAX_DEPTH`` (composing them recurses)."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self._depth >= shape.MAX_DEPTH:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"nested deeper than {shape.MAX_DEPTH} levels (the limit); a rollout document "
                "needs about 8",
                self.peek_event().start_mark,  # type: ignore[no-untyped-call]
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:  # `? [a, b]`: a list or a mapping as a key
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"a mapping key must be text, not a {type(key).__name__}",
                    key_node.start_mark,
                ) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"{shown(key)} is given twice in the same mapping; keep one",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(exc: yaml.YAMLError, source: str) -> Problem:
    where = ""
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        where = f" line {mark.line + 1}, column {mark.column + 1}:"
    detail = getattr(exc, "problem", None) or str(exc)
    return Problem("", f"{source}:{where} YAML syntax error: {detail}")


def _json_problem(exc: json.JSONDecodeError, source: str) -> Problem:
    return Problem(
        "", f"{source}: line {exc.lineno}, column {exc.colno}: JSON syntax error: {exc.msg}"
    )


_NUMBER_TOO_LONG = "a number has more than 4300 digits; no field takes one that long"


class _KeyGivenTwice(ValueError):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key given twice (the second would silently win)."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _KeyGivenTwice(key)
        found[key] = value
    return found


def load_json(text: str, source: str) -> Any:
    """The JSON value in ``text``, its shape checked (``config.shape``)."""
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise shape.too_deep(source) from None
    except json.JSONDecodeError:
        raise
    except _KeyGivenTwice as exc:
        raise SpecError(
            [Problem("", f"{source}: {shown(exc.key)} is given twice in the same object; keep one")]
        ) from None
    except ValueError:  # an integer of more than 4300 digits
        raise SpecError([Problem("", f"{source}: {_NUMBER_TOO_LONG}")]) from None
    shape.check_shape(data, source)
    return data


def load_data(text: str, source: str) -> Any:
    """The one document in ``text``, YAML or JSON (JSON first when it looks like JSON),
    its shape checked (``config.shape``): too deep, too big or not Unicode is a SpecError."""
    stripped = text.lstrip()
    if not stripped:
        raise SpecError([Problem("", f"{source} is empty; expected a rollout document")])
    json_error: json.JSONDecodeError | None = None
    if source.endswith(".json") or stripped.startswith("{"):
        try:
            return load_json(text, source)
        except json.JSONDecodeError as exc:
            json_error = exc  # it may still be flow-style YAML: {apiVersion: canary/v1, ...}
    if json_error is not None and source.endswith(".json"):
        raise SpecError([_json_problem(json_error, source)])
    try:
        documents = list(yaml.load_all(text, Loader=_UniqueKeyLoader))
    except yaml.YAMLError as exc:
        problem = _json_problem(json_error, source) if json_error else _yaml_problem(exc, source)
        raise SpecError([problem]) from None
    except RecursionError:  # pragma: no cover - the loader stops at MAX_DEPTH first
        raise shape.too_deep(source) from None
    except ValueError:  # an integer of more than 4300 digits
        raise SpecError([Problem("", f"{source}: {_NUMBER_TOO_LONG}")]) from None
    documents = [d for d in documents if d is not None]
    if len(documents) != 1:
        raise SpecError(
            [Problem("", f"{source} holds {len(documents)} documents; give exactly one rollout")]
        )
    shape.check_shape(documents[0], source)
    return documents[0]


def read_source(path: str | Path) -> Any:
    """The parsed YAML or JSON data of the file at ``path``; ``SpecError`` if unreadable."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([Problem("", f"cannot read {path}: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise SpecError([Problem("", f"{path} is not UTF-8 text")]) from None
    return load_data(text, str(path))


def load_file(path: str | Path) -> RolloutDocument:
    return parse_document(read_source(path))


def canonical_document(document: RolloutDocument, clients: Clients) -> RolloutDocument:
    """``document`` with every target in its kind's canonical form: what a daemon stores.

    The daemon's region is filled in, an ARN is reduced to a name, each kind's defaults are
    applied, so one piece of traffic has one key whichever way the spec named it. Raises
    ``SpecError`` naming the target and the fix when a target cannot be made canonical.
    """
    targets = []
    found = []
    for index, target in enumerate(document.spec.targets):
        try:
            targets.append(canonical_target(target, clients))
        except CanonicalError as exc:
            found.append(Problem(f"spec.targets[{index}].{exc.field}", str(exc)))
    if found:
        raise SpecError(found)
    spec = document.spec.model_copy(update={"targets": targets})
    # Read again, so rules across targets (the same traffic twice) see the canonical keys.
    return parse_document(document.model_copy(update={"spec": spec}).to_data())


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def known_field_names() -> Sequence[str]:
    """Every field name in the spec (every kind's too), for 'did you mean' suggestions."""
    names: set[str] = set()
    todo: list[type[BaseModel]] = [RolloutDocument, *(k.spec for k in KINDS)]
    seen: set[type[BaseModel]] = set()
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for field_name, info in model.model_fields.items():
            names.add(info.alias or field_name)
            todo += _models_in(info.annotation)
    return sorted(names)
