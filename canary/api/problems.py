"""Errors as ``application/problem+json`` (RFC 9457), the only error format the API speaks.

A client (a CI script, the CLI) must be able to tell what went wrong and what to change
without reading logs: ``title`` is the kind of problem, ``detail`` this occurrence in
words, and ``errors`` lists each bad field of a spec by path. No stack trace is ever sent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from config.errors import Problem

CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "urn:canary:problem:"

# status -> (type slug, title) for problems that only need the status to be named.
GENERIC: Mapping[int, tuple[str, str]] = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Missing or invalid bearer token"),
    403: ("forbidden", "The token's role does not allow this"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("body-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("invalid-spec", "Invalid rollout spec"),
    500: ("internal-error", "Internal server error"),
    503: ("unavailable", "Service unavailable"),
}


class ProblemError(Exception):
    """Raised by a handler; the error middleware turns it into a problem response."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        errors: Sequence[Problem] = (),
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        default_slug, default_title = GENERIC.get(status, ("error", "Error"))
        self.status = status
        self.detail = detail
        self.slug = slug or default_slug
        self.title = title or default_title
        self.errors = list(errors)
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            data["errors"] = [{"path": p.path, "message": p.message} for p in self.errors]
        return data | self.extra

    def response(self) -> web.Response:
        return web.Response(
            status=self.status,
            text=json.dumps(self.body()),
            content_type=CONTENT_TYPE,
            headers=self.headers,
        )


def bad_request(detail: str, path: str = "", *, slug: str = "bad-request") -> ProblemError:
    """A 400 about one part of the request (a query parameter, a header, the body)."""
    return ProblemError(400, detail, slug=slug, errors=[Problem(path, detail)] if path else [])
