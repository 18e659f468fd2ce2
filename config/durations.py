"""Durations as people write them in a spec: ``30s``, ``5m``, ``1h30m``, ``500ms``.

Kept as float seconds inside the models so arithmetic on the virtual clock stays trivial,
and written back in the same short form so a stored spec reads like the one submitted.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

_TOKEN = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
PATTERN = r"^(\d+(\.\d+)?(ms|h|m|s))+$"


def parse_duration(value: Any) -> float:
    """Seconds in ``value``: a number of seconds, or a string such as ``1h30m``."""
    if isinstance(value, bool):
        raise _bad(value)
    if isinstance(value, int | float):
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
    if pos == 0 or pos != len(text):
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
    return PydanticCustomError(
        "duration",
        "{value} is not a duration; write it like 30s, 5m or 1h30m",
        {"value": repr(value)},
    )


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
