"""A backend's error, as one line a person can read.

What a backend answers when it fails is not always meant for people: an emulator's HTML
error page, a proxy's 502 page, a multi-line stack dump. Copied as it is, it lands in every
gate event, the rollback reason, ``--wait`` output and ``rollout list``, dozens of times per
rollout. Every error message built from a backend's answer (``strategies.aws.translate``,
which the CloudWatch provider shares, and ``analysis.prometheus``) goes through
``reduce_error``: the code and one line. The whole text goes to the debug log only.
"""

from __future__ import annotations

import html
import re

import structlog

log = structlog.get_logger("canary.backend")

MAX_LINE = 160  # characters kept of a backend's message

_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_HEADING = re.compile(r"<h1[^>]*>(.*?)</h1>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_MARKUP = re.compile(r"<(!doctype|html|head|body|title|h1|p|pre|div)\b", re.IGNORECASE)


def one_line(text: str, limit: int = MAX_LINE) -> str:
    """``text`` as one line: an HTML page by its title (or first heading), other text by
    its first non-empty line, whitespace collapsed, cut at ``limit`` characters."""
    text = text.strip()
    if _MARKUP.search(text):  # in HTML, line breaks are spaces; elements are the lines
        text = " ".join(text.split())
        found = _TITLE.search(text) or _HEADING.search(text)
        text = found.group(1) if found else _TAG.sub("\n", text)
        text = html.unescape(text)
    line = next((x for x in (" ".join(r.split()) for r in text.splitlines()) if x), "")
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def reduce_error(code: str | int | None, body: str, **context: object) -> str:
    """``"<code>: <one line of body>"`` (just the line when it already starts with the code,
    just the code when the body says nothing more). The whole body is logged at debug level
    with ``context`` (the call it answered)."""
    line = one_line(body)
    if line != body.strip():
        log.debug("backend.error_body", code=code, body=body, **context)
    label = str(code) if code not in (None, "") else ""
    if not label or line.startswith(label):
        return line or label
    if not line or line == label:
        return label
    return f"{label}: {line}"
