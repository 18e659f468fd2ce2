"""Durations as people write them in a spec: ``30s``, ``5m``, ``1h30m``, ``500ms``.

Kept as float seconds inside the models so arithmetic on the virtual clock stays trivial,
and written back in the same short form so a stored spec reads like the one submitted.

Every duration field has a range (``RANGES``): a duration is a finite number of seconds
the engine will actually wait, never ``.inf``, NaN or ``1e999`` (which once stored as
``Infinitys`` and could not be read back), and never a ``1ms`` interval that would spin the
engine. The JSON Schema carries the range too: as ``minimum``/``maximum`` for a number of
seconds, and as the ``format`` of the string form (``canary-interval`` and so on: a JSON
Schema pattern cannot say "at most 7 days" of ``1h30m``-style text), with the range in the
description.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

_TOKEN = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|h|m|s)")  # ASCII digits only
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|h|m|s))+$"


def parse_duration(value: Any) -> float:
    """Seconds in ``value``: a number of seconds, or a string such as ``1h30m``."""
    if isinstance(value, bool):
        raise _bad(value)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise PydanticCustomError(
                "duration_finite",
                "{value} is not a duration; give a finite number of seconds, or write it "
                "like 30s, 5m or 1h30m",
                {"value": str(value)},
            )
        if value < 0:
            raise _bad(value)
        return float(value)
    if not isinstance(value, str):
        raise _bad(value)
    text = value.strip()
    pos, total = 0, 0.0
    for match in _TOKEN.finditer(text):
        if match.start() != pos:
            raise _bad(value)
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text) or not math.isfinite(total):
        raise _bad(value)
    return total


def format_duration(seconds: float) -> str:
    """The short form of ``seconds``, exact: ``90`` gives ``1m30s``, ``0.25`` gives ``250ms``.

    ``parse_duration(format_duration(x)) == x`` for every duration, so a stored spec reads
    back exactly as it was submitted.
    """
    if float(seconds).is_integer():
        whole = int(seconds)
        hours, rest = divmod(whole, 3600)
        minutes, secs = divmod(rest, 60)
        parts = [f"{hours}h"] if hours else []
        parts += [f"{minutes}m"] if minutes else []
        parts += [f"{secs}s"] if secs or not parts else []
        return "".join(parts)
    millis = seconds * 1000
    # Only when it reads back as the same float: 950ms parses to 0.9500000000000001.
    if seconds < 1 and millis.is_integer() and int(millis) * _UNITS["ms"] == seconds:
        return f"{int(millis)}ms"
    # The shortest text that reads back as the same float, without an exponent.
    return f"{Decimal(repr(float(seconds))):f}s"


def display_duration(seconds: float) -> str:
    """A duration for people to read in a message: milliseconds under a second, tenths of
    a second under a minute, whole seconds above (``3.9745`` gives ``4s``, ``0.25`` gives
    ``250ms``, ``90.4`` gives ``1m30s``). Never stored: specs use the exact format_duration."""
    if seconds < 1:
        return format_duration(round(seconds, 3))
    return format_duration(round(seconds, 1) if seconds < 60 else float(round(seconds)))


def _bad(value: Any) -> PydanticCustomError:
    from config.errors import shown

    return PydanticCustomError(
        "duration",
        "{value} is not a duration; write it like 30s, 5m or 1h30m",
        {"value": shown(value)},
    )


@dataclass(frozen=True)
class Range:
    """The durations a field accepts, in seconds, both ends included."""

    name: str  # the JSON Schema format of its string form: canary-<name>
    low: float
    high: float
    why: str  # what the bounds protect, for the error message

    @property
    def format(self) -> str:
        return f"canary-{self.name}"

    def describe(self) -> str:
        return f"from {format_duration(self.low)} to {format_duration(self.high)}"

    def check(self, seconds: float) -> float:
        if not self.low <= seconds <= self.high:
            raise PydanticCustomError(
                "duration_range",
                "{value} is out of range; give a duration {range} ({why})",
                {
                    "value": display_duration(seconds) if seconds < 1e15 else f"{seconds:g}s",
                    "range": self.describe(),
                    "why": self.why,
                },
            )
        return seconds


DAY = 86400.0
RANGES: dict[str, Range] = {
    r.name: r
    for r in (
        Range("bake", 0.0, 7 * DAY, "a step bakes for at most 7 days"),
        Range("interval", 1.0, 3600.0, "gates run at most once a second, at least once an hour"),
        Range("window", 1.0, DAY, "a query looks back at most one day"),
        Range("statistical-step", 1.0, 3600.0, "one value per second at most, per hour at least"),
        Range("delay", 0.0, 3600.0, "metrics arriving more than an hour late cannot judge a bake"),
        Range("warmup", 0.0, 3600.0, "a warm-up longer than an hour would hide a whole step"),
    )
}


def _schemas(name: str) -> tuple[WithJsonSchema, WithJsonSchema]:
    limits = RANGES[name]
    text = f"a duration {limits.describe()}, such as 30s, 5m or 1h30m"
    return (
        WithJsonSchema(
            {"type": "string", "pattern": PATTERN, "format": limits.format, "description": text}
        ),
        # What is accepted (validation) is wider than what is written back: seconds too.
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "string", "pattern": PATTERN, "format": limits.format},
                    {"type": "number", "minimum": limits.low, "maximum": limits.high},
                ],
                "description": f"{text}, or a number of seconds",
            },
            mode="validation",
        ),
    )


_BAKE, _INTERVAL, _WINDOW, _STEP, _DELAY, _WARMUP = (
    _schemas(n) for n in ("bake", "interval", "window", "statistical-step", "delay", "warmup")
)
_SERIALIZE = PlainSerializer(format_duration, return_type=str)
_PARSE = BeforeValidator(parse_duration)

Bake = Annotated[float, _PARSE, AfterValidator(RANGES["bake"].check), _SERIALIZE, *_BAKE]
Interval = Annotated[
    float, _PARSE, AfterValidator(RANGES["interval"].check), _SERIALIZE, *_INTERVAL
]
Window = Annotated[float, _PARSE, AfterValidator(RANGES["window"].check), _SERIALIZE, *_WINDOW]
StatisticalStep = Annotated[
    float, _PARSE, AfterValidator(RANGES["statistical-step"].check), _SERIALIZE, *_STEP
]
Delay = Annotated[float, _PARSE, AfterValidator(RANGES["delay"].check), _SERIALIZE, *_DELAY]
Warmup = Annotated[float, _PARSE, AfterValidator(RANGES["warmup"].check), _SERIALIZE, *_WARMUP]

# A duration without a range of its own (the simulator's scenario times).
Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": PATTERN,
            "description": "A duration such as 30s, 5m or 1h30m.",
        }
    ),
    # What is accepted (validation) is wider than what is written back: a number of seconds too.
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": PATTERN},
                {"type": "number", "minimum": 0},
            ],
            "description": "A duration such as 30s, 5m or 1h30m, or a number of seconds.",
        },
        mode="validation",
    ),
]
