"""What every handler reaches through the app: the engine, the authenticator, the metrics,
and the ``protected`` decorator that authenticates a request and checks its role."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from canary.api.auth import Authenticator, Principal, Role
from canary.engine import Engine
from canary.metrics import Metrics

ENGINE: web.AppKey[Engine] = web.AppKey("engine", Engine)
AUTH: web.AppKey[Authenticator] = web.AppKey("auth", Authenticator)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)


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


def protected(role: Role, what: str) -> Callable[[AuthedHandler], Handler]:
    """Authenticate the request (401) and require ``role`` (403) before the handler runs."""

    def wrap(func: AuthedHandler) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            auth = request.app[AUTH]
            principal = auth.identify(request.headers.get("Authorization"))
            auth.require(principal, role, what)
            return await func(request, principal)

        handler.__name__ = func.__name__
        handler.__doc__ = func.__doc__
        REQUIRED_ROLE[handler] = role
        return handler

    return wrap
