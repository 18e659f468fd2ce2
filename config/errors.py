"""Spec problems in words a user can act on.

pydantic's own messages name the rule that broke; a user needs the place in their document
and the fix. Every error becomes one ``Problem`` with a path like ``spec.steps[2].weight``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(ValueError):
    """A document that cannot be a rollout; ``problems`` lists every reason at once."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def render_path(loc: Iterable[str | int]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def _clean(loc: Sequence[str | int]) -> list[str | int]:
    # A discriminated union puts the chosen tag into the location; users never wrote it.
    from strategies.registry import kind_names

    kinds = kind_names()
    return [part for part in loc if not (isinstance(part, str) and part in kinds)]


def problems_from_validation(exc: ValidationError) -> list[Problem]:
    from config.spec import known_field_names
    from strategies.registry import unavailable

    found: list[Problem] = []
    for error in exc.errors(include_url=False):
        loc = _clean(error["loc"])
        kind = error["type"]
        ctx: dict[str, Any] = error.get("ctx") or {}
        given = error.get("input")
        if kind == "spec_problems":
            for subpath, message in ctx["problems"]:
                found.append(Problem(render_path([*loc, *subpath]), message))
            continue
        if kind == "missing":
            message = "required field is missing"
        elif kind == "extra_forbidden":
            name = str(loc[-1]) if loc else "?"
            message = f"unknown field {name!r}"
            close = difflib.get_close_matches(name, known_field_names(), n=1)
            message += f"; did you mean {close[0]!r}?" if close else "; remove it"
        elif kind == "union_tag_invalid":
            loc = [*loc, str(ctx.get("discriminator", "kind")).strip("'")]
            message = unavailable(ctx.get("tag")) or f"unknown target kind {ctx.get('tag')!r}"
        elif kind == "union_tag_not_found":
            loc = [*loc, "kind"]
            message = unavailable(None) or "required field is missing"
        elif kind == "literal_error" and loc and loc[-1] == "provider":
            message = f"unknown metric provider {given!r}; expected {ctx.get('expected')}"
        elif kind == "literal_error":
            message = f"{given!r} is not allowed; expected {ctx.get('expected')}"
        elif kind in {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}:
            key, form = {
                "greater_than_equal": ("ge", "{} or more"),
                "greater_than": ("gt", "above {}"),
                "less_than_equal": ("le", "{} or less"),
                "less_than": ("lt", "below {}"),
            }[kind]
            limit = ctx.get(key)
            bound = form.format(f"{limit:g}" if isinstance(limit, int | float) else limit)
            message = f"must be {bound}, not {given!r}"
        elif kind == "finite_number":
            message = f"must be a finite number, not {given!r}"
        elif kind == "too_short":
            message = f"needs at least {ctx.get('min_length')} item(s)"
        elif kind in {"model_type", "model_attributes_type", "dict_type"}:
            message = f"expected a mapping of fields, got {type(given).__name__}"
        elif kind == "list_type":
            message = f"expected a list, got {type(given).__name__}"
        elif kind.endswith("_parsing") or kind.endswith("_type"):
            wanted = kind.split("_")[0]
            wanted = {"int": "a whole number", "float": "a number", "bool": "true or false"}.get(
                wanted, f"a {wanted}"
            )
            message = f"expected {wanted}, got {given!r}"
        elif kind == "string_pattern_mismatch":
            message = f"{given!r} does not have the expected form ({ctx.get('pattern')})"
        else:
            message = error["msg"].removeprefix("Value error, ")
        found.append(Problem(render_path(loc), message))
    return found
