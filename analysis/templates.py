"""``{{ canary_version }}`` in a gate's query: filled from the rollout, never guessed.

A query that names a variable the rollout does not have would silently select nothing (or
everything), so an unknown name is a ``ProviderError`` that lists the known ones, and the
gate is ERROR rather than quietly INCONCLUSIVE.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from analysis.base import ProviderError

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def render(template: str, variables: Mapping[str, str]) -> str:
    """``template`` with every ``{{ name }}`` replaced by ``variables[name]``."""

    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in variables:
            known = ", ".join(sorted(variables)) or "none"
            raise ProviderError(
                f"the query uses {{{{ {name} }}}}, which is not known here (known: {known})"
            )
        return variables[name]

    return _PLACEHOLDER.sub(fill, template)
