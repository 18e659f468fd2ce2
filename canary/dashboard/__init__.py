"""The web dashboard, served by the daemon itself: static files shipped in the package.

There is no build step and no CDN: the page is hand-written HTML, CSS and ES modules in
``static/``, read from the installed package and sent as they are, so what a test loads in
a browser is what an operator gets. The page talks to the same ``/api/v1`` as the CLI, with
the same bearer tokens (the page keeps the token in the tab's ``sessionStorage``, never in a
URL or ``localStorage``), so the dashboard adds no way in: it can show and do exactly what
its token may.

Its responses carry a Content-Security-Policy without ``unsafe-inline`` (only this origin's
scripts, styles and API; no framing), ``X-Content-Type-Options: nosniff`` and
``Referrer-Policy: no-referrer``. The API keeps CORS closed: the page is same-origin.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from aiohttp import web

from canary.api.context import only_query
from canary.api.problems import ProblemError
from config.errors import shown

__all__ = ["ASSETS", "SECURITY_HEADERS", "routes"]

ASSETS = "/ui"  # where the scripts and the stylesheet are served
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
_ASSET_NAME = re.compile(r"^[a-z0-9-]{1,40}\.(js|css)$")

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate: a new daemon version serves new files
}


@cache
def _read(name: str) -> bytes | None:
    """A file of ``static/``, or None; read once (the package does not change under us)."""
    entry = resources.files(__package__).joinpath("static", name)
    return entry.read_bytes() if entry.is_file() else None


def _file_response(name: str) -> web.Response:
    body = _read(name)
    if body is None:
        raise ProblemError(404, f"no dashboard file {shown(name)}")
    content_type = CONTENT_TYPES[name[name.rindex(".") :]]
    return web.Response(body=body, headers={"Content-Type": content_type, **SECURITY_HEADERS})


async def index(request: web.Request) -> web.Response:
    """The dashboard's page; the rollout list and each rollout are views of it (#/...)."""
    only_query(request)
    return _file_response("index.html")


async def asset(request: web.Request) -> web.Response:
    only_query(request)
    name = request.match_info["name"]
    if not _ASSET_NAME.match(name):
        raise ProblemError(404, f"no dashboard file {shown(name)}")
    return _file_response(name)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/", index, allow_head=False),
        web.get(f"{ASSETS}/{{name}}", asset, allow_head=False),
    ]
