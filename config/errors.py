"""Spec problems in words a user can act on.

pydantic's own messages name the rule that broke; a user needs the place in their document
and the fix. Every error becomes one ``Problem`` with a path like ``spec.steps[2].weight``.

What a message echoes of the input is cut short (``shown``): a 100,000-character name must
not come back as a 200 KB error, and the fix at the end of the message must stay readable.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

# The most of a value, a path part or a message that an error echoes back.
ECHO_LIMIT = 80
MESSAGE_LIMIT = 600
MAX_PROBLEMS = 50


def shorten(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text`` cut to about ``limit`` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 20]}…({len(text)} characters)"


def shown(value: Any, limit: int = ECHO_LIMIT) -> str:
    """``repr(value)`` as an error message echoes it: short, and never a lone surrogate
    (those cannot be encoded as UTF-8, so they would break the response)."""
    text = shorten(repr(value), limit)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


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
            part = shown(part)[1:-1] if len(part) > ECHO_LIMIT or not part.isprintable() else part
            text += f".{part}" if text else part
    return text


def _echoing(message: str, ctx: dict[str, Any]) -> str:
    """``message`` with each long value from ``ctx`` shortened, and capped as a whole."""
    for value in ctx.values():
        if isinstance(value, str) and len(value) > ECHO_LIMIT:
            message = message.replace(value, shorten(value))
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return shorten(message, MESSAGE_LIMIT)


def capped(problems: Sequence[Problem]) -> list[Problem]:
    """At most MAX_PROBLEMS problems, the last one saying how many more there were."""
    if len(problems) <= MAX_PROBLEMS:
        return list(problems)
    more = len(problems) - MAX_PROBLEMS + 1
    return [*problems[: MAX_PROBLEMS - 1], Problem("", f"and {more} more problem(s)")]


def _clean(loc: Sequence[str | int]) -> list[str | int]:
    # A discriminated union puts the chosen tag into the location; users never wrote it.
    from analysis.hooks.registry import BY_NAME as HOOK_KINDS
    from strategies.registry import kind_names

    kinds = set(kind_names())
    if "hooks" in loc:  # a hook's kind, under spec.hooks
        kinds |= set(HOOK_KINDS)
    return [part for part in loc if not (isinstance(part, str) and part in kinds)]


def _hook_kind_problem(tag: Any) -> str:
    from analysis.hooks.registry import BY_NAME as HOOK_KINDS

    known = ", ".join(HOOK_KINDS)
    if tag is None:
        return f"required field is missing; a hook's kind is one of {known}"
    return f"unknown hook kind {tag!r}; expected one of {known}"


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
                found.append(Problem(render_path([*loc, *subpath]), _echoing(message, {})))
            continue
        if kind == "missing":
            message = "required field is missing"
        elif kind == "extra_forbidden":
            name = str(loc[-1]) if loc else "?"
            message = f"unknown field {shown(name)}"
            close = difflib.get_close_matches(name, known_field_names(), n=1)
            message += f"; did you mean {close[0]!r}?" if close else "; remove it"
        elif kind in {"union_tag_invalid", "union_tag_not_found"} and "hooks" in loc:
            loc = [*loc, "kind"]
            message = _hook_kind_problem(ctx.get("tag"))
        elif kind == "union_tag_invalid":
            loc = [*loc, str(ctx.get("discriminator", "kind")).strip("'")]
            message = unavailable(ctx.get("tag")) or f"unknown target kind {ctx.get('tag')!r}"
        elif kind == "union_tag_not_found":
            loc = [*loc, "kind"]
            message = unavailable(None) or "required field is missing"
        elif kind == "literal_error" and loc and loc[-1] == "provider":
            message = f"unknown metric provider {shown(given)}; expected {ctx.get('expected')}"
        elif kind == "literal_error":
            message = f"{shown(given)} is not allowed; expected {ctx.get('expected')}"
        elif kind in {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}:
            key, form = {
                "greater_than_equal": ("ge", "{} or more"),
                "greater_than": ("gt", "above {}"),
                "less_than_equal": ("le", "{} or less"),
                "less_than": ("lt", "below {}"),
            }[kind]
            limit = ctx.get(key)
            bound = form.format(f"{limit:g}" if isinstance(limit, int | float) else limit)
            message = f"must be {bound}, not {shown(given)}"
        elif kind == "finite_number":
            message = f"must be a finite number, not {shown(given)}"
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
            message = f"expected {wanted}, got {shown(given)}"
        elif kind == "string_pattern_mismatch":
            message = f"{shown(given)} does not have the expected form ({ctx.get('pattern')})"
        else:
            message = error["msg"].removeprefix("Value error, ")
        found.append(Problem(render_path(loc), _echoing(message, ctx)))
    return capped(found)
