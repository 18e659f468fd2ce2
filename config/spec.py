"""The Rollout spec: what a user writes to ask for a progressive delivery.

Validation is the user's first contact with canary, so every problem in a document is
reported at once, each with its path and what to do about it, and nothing is ever guessed:
an unknown field, kind or provider is an error, not a default.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from config import metricmath
from config.durations import Duration, format_duration
from config.errors import Problem, SpecError, problems_from_validation
from config.targets import StrictModel, Target

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

PROVIDERS: tuple[str, ...] = ("cloudwatch", "prometheus")
PRESETS: Mapping[str, tuple[str, ...]] = {
    "cloudwatch": ("lambda-error-rate", "lambda-p95-duration"),
    "prometheus": ("http-error-rate", "http-p95-latency"),
}


def _name(value: str) -> str:
    if len(value) > 63 or not _NAME.match(value):
        raise PydanticCustomError(
            "name",
            "{value} is not a valid name; use 1-63 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit",
            {"value": repr(value)},
        )
    return value


Name = Annotated[str, AfterValidator(_name)]


def problems(*items: tuple[tuple[str | int, ...], str]) -> PydanticCustomError:
    """One error that carries several located problems (see ``config.errors``)."""
    return PydanticCustomError(
        "spec_problems",
        "; ".join(message for _, message in items),
        {"problems": [(list(path), message) for path, message in items]},
    )


def _weight(value: float) -> float:
    if not 0 < value <= 100:
        raise PydanticCustomError(
            "weight_range",
            "{value} is out of range; a weight is the canary's share of traffic in percent, "
            "above 0 and at most 100",
            {"value": f"{value:g}"},
        )
    return value


Weight = Annotated[float, AfterValidator(_weight)]


class Step(StrictModel):
    weight: Weight
    bake: Duration = 0.0
    approval: bool = Field(default=False, description="wait for a promote after the bake")


def default_steps() -> list[Step]:
    """10% for 5m, 25% for 10m, 50% for 15m, then 100%."""
    return [
        Step(weight=10, bake=300),
        Step(weight=25, bake=600),
        Step(weight=50, bake=900),
        Step(weight=100),
    ]


class CloudWatchMetric(StrictModel):
    """One CloudWatch metric statistic, named by its id in a cloudwatch gate's ``metrics``."""

    namespace: str = Field(min_length=1, description="e.g. AWS/Lambda")
    metric: str = Field(min_length=1, description="the metric name, e.g. Errors")
    stat: str = Field(min_length=1, description="Sum, Average, Maximum, SampleCount, p95, ...")
    dimensions: dict[str, str] = Field(
        default_factory=dict, description="values may use {{ canary_version }} and the like"
    )


class Gate(StrictModel):
    """One metric check, judged at every analysis interval during a bake."""

    name: Name
    provider: Literal["cloudwatch", "prometheus"]
    query: str | None = Field(default=None, min_length=1)
    stable_query: str | None = Field(
        default=None, min_length=1, description="the same metric for the stable version"
    )
    preset: str | None = None
    max: float | None = Field(default=None, allow_inf_nan=False)
    min: float | None = Field(default=None, allow_inf_nan=False)
    min_samples: int = Field(default=0, ge=0, description="fewer samples: INCONCLUSIVE")
    window: Duration = Field(default=300.0, description="how far back each query looks")
    metrics: dict[str, CloudWatchMetric] | None = Field(
        default=None,
        description="cloudwatch: metric stats, by id, that query, stable_query and "
        "samples_query use as metric math",
    )
    samples_query: str | None = Field(
        default=None,
        min_length=1,
        description="your query's sample count for the canary (e.g. its invocations); "
        "min_samples needs it",
    )

    @model_validator(mode="after")
    def _check(self) -> Gate:
        found: list[tuple[tuple[str | int, ...], str]] = self._metric_problems()
        if (self.query is None) == (self.preset is None):
            found.append(
                (
                    ("query",),
                    "give exactly one of query (your own expression) or preset "
                    f"(one of {', '.join(PRESETS[self.provider])})",
                )
            )
        if self.preset is not None and self.preset not in PRESETS[self.provider]:
            found.append(
                (
                    ("preset",),
                    f"unknown {self.provider} preset {self.preset!r}; expected one of "
                    f"{', '.join(PRESETS[self.provider])}",
                )
            )
        if self.max is None and self.min is None:
            found.append((("max",), "a gate needs a threshold: set max, min or both"))
        if self.max is not None and self.min is not None and self.min > self.max:
            found.append(
                (("min",), f"min {self.min:g} is above max {self.max:g}; no value could pass")
            )
        if self.window <= 0:
            found.append((("window",), "must be longer than 0s"))
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


class Analysis(StrictModel):
    interval: Duration = Field(default=30.0, description="how often gates run during a bake")
    gates: list[Gate] = Field(default_factory=list)
    failure_limit: int = Field(default=1, ge=0, description="failed evaluations tolerated")
    inconclusive_limit: int = Field(default=3, ge=0, description="inconclusive ones tolerated")
    consecutive_error_limit: int = Field(
        default=4, ge=0, description="provider errors in a row tolerated; then rollback"
    )
    on_inconclusive: Literal["pause", "rollback", "continue"] = "pause"

    @field_validator("interval")
    @classmethod
    def _positive_interval(cls, value: float) -> float:
        if value <= 0:
            raise PydanticCustomError(
                "interval", "must be longer than 0s; gates are evaluated this often"
            )
        return value

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


class SlackNotify(StrictModel):
    channel: str = Field(pattern=r"^[#@]?[\w.-]+$", description="e.g. #deploys")


class Notify(StrictModel):
    slack: SlackNotify | None = None


class RolloutSpec(StrictModel):
    targets: list[Target] = Field(min_length=1)
    steps: list[Step] = Field(default_factory=default_steps, min_length=1)
    analysis: Analysis = Field(default_factory=Analysis)
    notify: Notify = Field(default_factory=Notify)

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
    def _distinct_targets(cls, targets: list[Target]) -> list[Target]:
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


class Metadata(StrictModel):
    name: Name
    build: str | None = Field(
        default=None, max_length=200, description="CI build id; doubles as idempotency key"
    )
    labels: dict[str, str] = Field(default_factory=dict)


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
    """A YAML loader that refuses a key given twice: the second would silently win."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"{key!r} is given twice in the same mapping; keep one",
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


def load_data(text: str, source: str) -> Any:
    """The one document in ``text``, YAML or JSON (JSON first when it looks like JSON)."""
    stripped = text.lstrip()
    if not stripped:
        raise SpecError([Problem("", f"{source} is empty; expected a rollout document")])
    json_error: json.JSONDecodeError | None = None
    if source.endswith(".json") or stripped.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            json_error = exc  # it may still be flow-style YAML: {apiVersion: canary/v1, ...}
    if json_error is not None and source.endswith(".json"):
        raise SpecError([_json_problem(json_error, source)])
    try:
        documents = list(yaml.load_all(text, Loader=_UniqueKeyLoader))
    except yaml.YAMLError as exc:
        problem = _json_problem(json_error, source) if json_error else _yaml_problem(exc, source)
        raise SpecError([problem]) from None
    documents = [d for d in documents if d is not None]
    if len(documents) != 1:
        raise SpecError(
            [Problem("", f"{source} holds {len(documents)} documents; give exactly one rollout")]
        )
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


def known_field_names() -> Sequence[str]:
    """Every field name in the spec, for 'did you mean' suggestions."""
    from config import targets

    names: set[str] = set()
    models: list[type[StrictModel]] = [
        RolloutDocument,
        Metadata,
        RolloutSpec,
        Step,
        Analysis,
        Gate,
        CloudWatchMetric,
        Notify,
        SlackNotify,
        targets.LambdaAliasTarget,
        targets.AppConfigFlagTarget,
        targets.K8sGatewayApiTarget,
        targets.K8sIstioTarget,
        targets.K8sNginxTarget,
        targets.K8sSmiTarget,
    ]
    for model in models:
        for field_name, info in model.model_fields.items():
            names.add(info.alias or field_name)
    return sorted(names)
