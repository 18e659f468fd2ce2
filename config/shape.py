"""What parsed JSON or YAML may look like before a model reads it: how deep, how big, what text.

A document comes from outside (an HTTP body, a file), so its shape is checked before it is
walked by anything recursive: 50,000 nested lists must be a clear 400, not a RecursionError
and a 500; a YAML alias bomb (a few lines that expand to a billion nodes) must be refused
before validation walks it; and a lone surrogate (``"\\ud800"``, valid JSON, not valid
Unicode) must be refused where it is, since it cannot be stored or sent back as UTF-8.
A rollout document is about 8 levels deep and a few hundred nodes, so the limits are far
above any real one.
"""

from __future__ import annotations

from typing import Any

from config.errors import Problem, SpecError, render_path, shorten

MAX_DEPTH = 32
MAX_NODES = 100_000


def too_deep(source: str) -> SpecError:
    return SpecError(
        [
            Problem(
                "",
                f"{source} is nested deeper than {MAX_DEPTH} levels (the limit); a rollout "
                "document needs about 8",
            )
        ]
    )


def _bad_text(text: str) -> str | None:
    """Why ``text`` is not valid Unicode text, or None when it is."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        char = text[exc.start]
        return (
            f"holds a lone surrogate (\\u{ord(char):04x}) at character {exc.start + 1}; "
            "text must be valid Unicode (in JSON, escape a character outside the BMP as a "
            "surrogate pair)"
        )
    return None


def check_shape(data: Any, source: str) -> None:
    """Raise ``SpecError`` when ``data`` is too deep, too big, or holds text that is not
    valid Unicode. Iterative: the walk itself never recurses."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    nodes = 0
    while stack:
        node, path = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise SpecError(
                [
                    Problem(
                        "",
                        f"{source} holds more than {MAX_NODES} values (the limit; YAML "
                        "aliases count each time they are used); a rollout document is far "
                        "smaller",
                    )
                ]
            )
        if len(path) > MAX_DEPTH:
            raise too_deep(source)
        if isinstance(node, str):
            reason = _bad_text(node)
            if reason is not None:
                raise SpecError([Problem(render_path(path), reason)])
        elif isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, str) and (reason := _bad_text(key)) is not None:
                    raise SpecError([Problem(render_path(path), f"a key {reason}")])
                name = key if isinstance(key, str) else shorten(repr(key))
                stack.append((value, (*path, name)))
        elif isinstance(node, list):
            stack.extend((value, (*path, index)) for index, value in enumerate(node))
