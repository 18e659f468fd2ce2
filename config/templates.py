"""Query templates: ``{{ canary_version }}`` and friends, filled in before a query is sent.

A variable nobody defined must never become an empty string: a query selecting
``version=""`` finds no series, and "no data" would be judged on the wrong question. So the
spec validator lists the names a query uses (``names_in``) and refuses unknown ones, and
``render`` refuses any name it has no value for.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from config.targets import Target

_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_ANY_BRACES = re.compile(r"\{\{(.*?)\}\}")

# Known in every evaluation, whatever the target (see canary.engine.Engine._variables and
# the providers, which add ``window``).
ALWAYS = ("canary_version", "stable_version", "window", "rollout", "step", "weight")


class TemplateError(ValueError):
    """A template names a variable that has no value, or is malformed."""


def names_in(template: str) -> list[str]:
    """The variable names ``template`` uses, in order of first use; raises on ``{{ 1x }}``."""
    for match in _ANY_BRACES.finditer(template):
        if not _VARIABLE.fullmatch(match.group(0)):
            raise TemplateError(
                f"{match.group(0)!r} is not a template variable; write it like "
                "{{ canary_version }}"
            )
    return list(dict.fromkeys(m.group(1) for m in _VARIABLE.finditer(template)))


def render(template: str, variables: Mapping[str, str]) -> str:
    """``template`` with every ``{{ name }}`` replaced; raises ``TemplateError`` for a gap."""
    missing = [
        name for name in names_in(template) if name not in variables or variables[name] == ""
    ]
    if missing:
        known = ", ".join(sorted(k for k, v in variables.items() if v != ""))
        raise TemplateError(
            f"no value for {', '.join('{{ ' + n + ' }}' for n in missing)} in the query; "
            f"known here: {known}"
        )
    return _VARIABLE.sub(lambda m: variables[m.group(1)], template)


def target_variables(target: Target) -> dict[str, str]:
    """A target's own fields as template variables (``function``, ``namespace``, ...)."""
    return {
        name: str(value)
        for name, value in target.model_dump(mode="json", exclude_none=True).items()
        if not isinstance(value, dict | list)
    }
