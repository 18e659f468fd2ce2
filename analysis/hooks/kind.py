"""What a hook kind declares, what every hook says in a spec, and what a hook is told.

A hook is a question asked at a point of the rollout: before any traffic moves
(``pre-rollout``), at a step (``step``: once after its shift, or every interval of its
bake), before promotion (``pre-promotion``), after it (``post-rollout``) and after a
rollback (``on-rollback``). At the first three it is a gate: its answer is a PASS, FAIL,
INCONCLUSIVE or ERROR counted against the same limits as the metric gates; at the last two
it is told what happened, and its failure is recorded, never acted on.

A kind's module holds its spec model (a ``HookSpec`` with ``kind: Literal[...]``), its
settings (secrets and headers live there, never in a spec), and a caller that asks once:
timeouts and retries are the engine's (``canary/actions.py``), so every kind gets them alike.
A caller that gets no answer raises ``HookError`` (timeout, 5xx, unreachable): ERROR, tried
again up to the hook's ``retries``. An answer that says no is a FAIL, never an error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, Literal, Protocol, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

from analysis.base import Verdict
from config.durations import PATTERN, Range, format_duration, parse_duration
from config.targets import StrictModel

C = TypeVar("C")

Point = Literal["pre-rollout", "step", "pre-promotion", "post-rollout", "on-rollback"]
POINTS: tuple[str, ...] = ("pre-rollout", "step", "pre-promotion", "post-rollout", "on-rollback")
GATE_POINTS = frozenset({"pre-rollout", "step", "pre-promotion"})
"""Points where a hook's answer decides; at the others it is recorded only."""

AWS_ACCESS = "the daemon's AWS access (`CANARY_AWS_REGION`, `CANARY_AWS_ENDPOINT_URL`)"

BODY_EXCERPT = 512
"""Characters of an answer's body kept in the verdict: enough to say why, bounded."""

TIMEOUT = Range("hook-timeout", 1.0, 3600.0, "a hook answers within an hour or is an ERROR")
_TEXT = f"a duration {TIMEOUT.describe()}, such as 30s or 10m"
HookTimeout = Annotated[
    float,
    BeforeValidator(parse_duration),
    AfterValidator(TIMEOUT.check),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": PATTERN, "description": _TEXT}),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": PATTERN},
                {"type": "number", "minimum": TIMEOUT.low, "maximum": TIMEOUT.high},
            ],
            "description": f"{_TEXT}, or a number of seconds",
        },
        mode="validation",
    ),
]

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class HookSpec(StrictModel):
    """What every hook says, whatever its kind. A kind adds ``kind`` and its own fields."""

    kind: str
    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=NAME_PATTERN,
        description="unique among the hooks and gates; names its verdicts",
    )
    point: Point = Field(description="when it runs")
    weight: float | None = Field(
        default=None,
        strict=True,
        gt=0,
        le=100,
        description="point step: the step it runs at, by that step's weight; omitted: every step",
    )
    run: Literal["once", "every-interval"] | None = Field(
        default=None,
        description="point step: once after the shift (default), or every analysis interval "
        "of the bake",
    )
    timeout: HookTimeout = Field(default=30.0, description="one attempt's time; then ERROR")
    retries: int = Field(
        default=0,
        strict=True,
        ge=0,
        le=10,
        description="attempts after one that got no answer (timeout, 5xx, unreachable)",
    )

    @property
    def every_interval(self) -> bool:
        return self.run == "every-interval"

    def at_step(self, weight: float) -> bool:
        """Whether this hook runs at the step of ``weight``."""
        return self.point == "step" and (self.weight is None or self.weight == weight)


@dataclass(frozen=True)
class HookTarget:
    key: str
    kind: str
    canary_version: str
    stable_version: str | None


@dataclass(frozen=True)
class HookCall:
    """What a hook is told: the payload of a webhook or of a test function's event."""

    point: str
    hook: str
    rollout_id: str
    rollout: str
    targets: Sequence[HookTarget]
    step: int  # 1-based
    steps: int
    weight: float
    at: str  # ISO 8601, from the daemon's clock
    timestamp: int  # the same instant in Unix seconds (signed with the body)
    reason: str | None = None  # on-rollback: why
    build: str | None = None
    elapsed: float = 0.0  # seconds since the rollout was created (scripted answers); not sent

    def payload(self) -> dict[str, Any]:
        return {
            "point": self.point,
            "hook": self.hook,
            "rollout": {"id": self.rollout_id, "name": self.rollout, "build": self.build},
            "targets": [
                {
                    "key": t.key,
                    "kind": t.kind,
                    "canary_version": t.canary_version,
                    "stable_version": t.stable_version,
                }
                for t in self.targets
            ],
            "step": self.step,
            "steps": self.steps,
            "weight": self.weight,
            "at": self.at,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class HookAnswer:
    """An answer: its verdict, why in words, and the values it rests on (status, body)."""

    verdict: Verdict
    explanation: str
    detail: Mapping[str, Any] = field(default_factory=dict)


class HookError(Exception):
    """No answer (timeout, 5xx, unreachable): ERROR, and worth another attempt."""

    def __init__(
        self, message: str, detail: Mapping[str, Any] | None = None, *, retryable: bool = True
    ) -> None:
        super().__init__(message)
        self.detail = dict(detail or {})
        self.retryable = retryable
        """False when asking again cannot help (access denied, no such function)."""


class HookCaller(Protocol):
    """Asks one hook once."""

    async def call(self, hook: Any, call: HookCall) -> HookAnswer: ...


@dataclass(frozen=True)
class HookKind(Generic[C]):
    """One kind of hook: its spec, settings and caller."""

    name: str
    summary: str
    spec: type[HookSpec]
    settings: type[BaseModel] | None
    clients: Callable[[Any], C]
    build: Callable[[Any, C], HookCaller | None]
    """(settings, clients) -> the caller, or None when the settings do not turn it on."""
    unconfigured: str = ""
    gate_only: bool = False
    """Only a gate (an alarm state): refused at post-rollout and on-rollback."""
    uses: str = ""
    """Settings it shares with others (the daemon's AWS access, the prometheus provider's)."""


def excerpt(text: str, limit: int = BODY_EXCERPT) -> str:
    """At most ``limit`` characters of ``text``, marked when cut."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fail_message(text: str) -> tuple[bool, str | None]:
    """Whether an answer's body is JSON saying ``{"status": "fail"}``, and its ``message``.
    An empty body, or one that is not JSON, says nothing of the kind."""
    try:
        data = json.loads(text) if text.strip() else None
    except ValueError:
        return False, None
    if not isinstance(data, Mapping):
        return False, None
    status = data.get("status")
    message = data.get("message")
    said = message if isinstance(message, str) else None
    return isinstance(status, str) and status.lower() == "fail", said
