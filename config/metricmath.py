"""The names a CloudWatch metric-math expression refers to.

In metric math, functions are upper case (``SUM``, ``FILL``, ``IF``), text is quoted, and
the ids of other queries start with a lower-case letter. That is enough to find the ids
an expression uses (the spec checks each is defined) and to rename them (the provider
prefixes them, since ids must be unique within one GetMetricData call).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

ID_PATTERN = r"[a-z][A-Za-z0-9_]*"
_ID = re.compile(rf"^{ID_PATTERN}$")
_TOKENS = re.compile(rf"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|\b{ID_PATTERN}\b")


def valid_id(name: str) -> bool:
    """A query id GetMetricData accepts: a lower-case letter, then letters, digits and _."""
    return bool(_ID.match(name))


def ids_in(expression: str) -> list[str]:
    """The ids ``expression`` refers to, in order of first use (quoted text is skipped)."""
    found = [m.group(0) for m in _TOKENS.finditer(expression) if m.group(0)[0] not in "\"'"]
    return list(dict.fromkeys(found))


def rename_ids(expression: str, names: Mapping[str, str]) -> str:
    """``expression`` with each id in ``names`` replaced; quoted text is left alone."""

    def swap(m: re.Match[str]) -> str:
        token = m.group(0)
        return names.get(token, token)

    return _TOKENS.sub(swap, expression)
