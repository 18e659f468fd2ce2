"""What every handler reaches through the app: the engine, the authenticator, the metrics,
and the ``protected`` decorator that authenticates a request and checks its role."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from canary.api.auth import Authenticator, Principal, Role
from canary.api.problems import bad_request
from canary.engine import Engine
from canary.metrics import Metrics
from config.errors import shorten, shown
from config.spec import RolloutDocument

ENGINE: web.AppKey[Engine] = web.AppKey("engine", Engine)
AUTH: web.AppKey[Authenticator] = web.AppKey("auth", Authenticator)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
# Every submitted spec goes through this before anything compares or stores it: each target
# in its kind's canonical form (config.spec.canonical_document), so one traffic, one key.
CANONICAL: web.AppKey[Callable[[RolloutDocument], RolloutDocument]] = web.AppKey("canonical")


@dataclass
class Streams:
    """Open event streams end when the daemon shuts down (clients reconnect to the next)."""

    heartbeat: float = 15.0  # seconds between keep-alive comments
    closing: asyncio.Event = field(default_factory=asyncio.Event)


STREAMS: web.AppKey[Streams] = web.AppKey("streams", Streams)
# The id of the request being handled (each request runs in its own task).
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AuthedHandler = Callable[[web.Request, Principal], Awaitable[web.StreamResponse]]

# handler -> the role it needs; read by the OpenAPI check and the role tests.
REQUIRED_ROLE: dict[Handler, Role] = {}


def only_query(request: web.Request, *known: str) -> None:
    """A query parameter the route does not know is an error (a typo must not be ignored)."""
    unknown = sorted(set(request.query) - set(known))
    if unknown:
        accepted = ", ".join(known) if known else "none"
        raise bad_request(
            f"unknown query parameter(s) {shorten(', '.join(map(shown, unknown)), 200)}; "
            f"accepted: {accepted}",
            f"query.{shown(unknown[0])[1:-1]}",
        )


def protected(
    role: Role, what: str, query: tuple[str, ...] = ()
) -> Callable[[AuthedHandler], Handler]:
    """Authenticate the request (401), require ``role`` (403), accept only ``query``."""

    def wrap(func: AuthedHandler) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            auth = request.app[AUTH]
            principal = auth.identify(request.headers.get("Authorization"))
            auth.require(principal, role, what)
            only_query(request, *query)
            return await func(request, principal)

        handler.__name__ = func.__name__
        handler.__doc__ = func.__doc__
        REQUIRED_ROLE[handler] = role
        return handler

    return wrap
