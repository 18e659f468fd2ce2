"""The daemon's HTTP application.

``/healthz`` answers as long as the process serves requests and the engine runs, which is
what a container orchestrator needs to decide on a restart; ``/readyz`` also asks the store,
which is what a load balancer needs to send traffic. ``/metrics`` is for Prometheus. The
control API lives under ``/api/v1`` (routes in ``canary.api.rollouts``, documented in
``canary.api.openapi``). Every error, ours or aiohttp's (404, 405, 413), leaves as
``application/problem+json``; an unexpected exception is logged with a request id and
answered with a 500 that carries the id but never a stack trace.

aiohttp answers a request it cannot parse (a header with a NUL byte, a header over 8 KB)
itself, before any middleware, in plain text. ``ApiRunner`` serves the app with a
connection handler that answers those as problems too, with an ``X-Request-Id``; the daemon
and the tests serve through it.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Callable
from functools import partial

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from analysis.health import ProviderHealth
from canary import __version__, dashboard
from canary.api import openapi, rollouts, slack_actions
from canary.api.auth import Authenticator
from canary.api.context import (
    AUTH,
    CANONICAL,
    ENGINE,
    METRICS,
    REQUEST_ID,
    STREAMS,
    Handler,
    Streams,
    only_query,
)
from canary.api.problems import ProblemError
from canary.api.whoami import whoami
from canary.engine import Engine
from canary.hooks import hooks_checked
from canary.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from canary.metrics import Metrics
from canary.slack import build_actions, slack_checked
from config.errors import SpecError, shorten
from config.settings import Settings
from config.spec import RolloutDocument, canonical_document
from strategies.registry import Clients

__all__ = ["ENGINE", "MAX_BODY", "ApiRunner", "build_app"]

log = structlog.get_logger("canary.api")

HEALTH: web.AppKey[ProviderHealth] = web.AppKey("health", ProviderHealth)

MAX_BODY = 1024 * 1024  # 1 MiB: a spec is a few KiB
READY_TIMEOUT = 5.0
HEALTH_WAIT = 0.5  # /readyz waits this long for provider checks, then shows the last known
MAX_FIELD = 8190  # aiohttp's limit on a header line (and the request line), in bytes
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _request_id(request: web.Request) -> str:
    given = request.headers.get("X-Request-Id", "")
    return given if _REQUEST_ID.match(given) else secrets.token_hex(8)


def _http_problem(request: web.Request, exc: web.HTTPException) -> ProblemError:
    """aiohttp's own errors (no route, wrong method, body too large) as problems."""
    headers = {}
    if exc.status == 404:
        detail = (
            f"no route {request.method} {shorten(request.path)}; the API lives under "
            f"{rollouts.PREFIX} (see {rollouts.PREFIX}/openapi.json)"
        )
    elif exc.status == 405:
        allowed = ", ".join(sorted(getattr(exc, "allowed_methods", ()) or ()))
        detail = f"{request.method} is not allowed on {shorten(request.path)}; allowed: {allowed}"
        headers["Allow"] = allowed
    elif exc.status == 413:
        detail = f"the body is larger than {MAX_BODY // 1024} KiB; a rollout spec is far smaller"
    else:
        detail = exc.text or exc.reason
    return ProblemError(exc.status, detail, headers=headers)


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = _request_id(request)
    REQUEST_ID.set(request_id)
    try:
        response = await handler(request)
    except ProblemError as exc:
        response = exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _http_problem(request, exc).response()
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as exc:
        log.exception(
            "api.unexpected_error",
            request_id=request_id,
            method=request.method,
            path=request.path,
            error=repr(exc),
        )
        response = ProblemError(
            500,
            f"an unexpected error occurred; it was logged with request id {request_id}",
            extra={"request_id": request_id},
        ).response()
    if not response.prepared:
        response.headers["X-Request-Id"] = request_id
    return response


async def healthz(request: web.Request) -> web.Response:
    only_query(request)
    engine = request.app[ENGINE]
    if not engine.running:
        return web.json_response({"status": "starting", "version": __version__}, status=503)
    return web.json_response({"status": "ok", "version": __version__})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the store answers and the engine runs; the providers' states are listed
    but never make the daemon unready (it still has rollouts to roll back)."""
    only_query(request)
    engine = request.app[ENGINE]
    try:
        await asyncio.wait_for(engine.store.ping(), READY_TIMEOUT)
    except Exception as exc:
        log.warning("api.not_ready", error=repr(exc))
        raise ProblemError(
            503, f"the store cannot be used ({type(exc).__name__}); see the daemon's log"
        ) from None
    if not engine.running:
        raise ProblemError(503, "the engine is not running (starting or stopping)")
    states = await request.app[HEALTH].states(wait=HEALTH_WAIT)  # slow ones: last known
    return web.json_response(
        {
            "status": "ready",
            "version": __version__,
            "providers": {s.provider: s.as_data() for s in states},
        }
    )


async def metrics(request: web.Request) -> web.Response:
    only_query(request)
    engine, registry = request.app[ENGINE], request.app[METRICS]
    try:
        registry.set_live(await asyncio.wait_for(engine.store.live(), READY_TIMEOUT))
    except Exception as exc:  # the other metrics are still worth serving
        log.warning("metrics.live_unavailable", error=repr(exc))
    await request.app[HEALTH].states(wait=HEALTH_WAIT)  # canary_provider_up, kept fresh
    return web.Response(body=registry.render(), headers={"Content-Type": METRICS_CONTENT_TYPE})


async def openapi_document(request: web.Request) -> web.Response:
    only_query(request)
    return web.json_response(openapi.document())


def _refusing(
    canonical: Callable[[RolloutDocument], RolloutDocument],
) -> Callable[[RolloutDocument], RolloutDocument]:
    """A target that cannot be made canonical (no region anywhere) is the client's 422."""

    def apply(document: RolloutDocument) -> RolloutDocument:
        try:
            return canonical(document)
        except SpecError as exc:
            raise rollouts.spec_problem(exc, syntax=False) from None

    return apply


async def _close(clients: Clients) -> None:
    clients.close()


async def _close_streams(app: web.Application) -> None:
    app[STREAMS].closing.set()


def build_app(
    engine: Engine,
    settings: Settings,
    *,
    metrics_registry: Metrics | None = None,
    heartbeat: float = 15.0,
    health: ProviderHealth | None = None,
    canonical: Callable[[RolloutDocument], RolloutDocument] | None = None,
) -> web.Application:
    """The app; ``health`` and ``canonical`` default to what ``settings`` alone give (no
    provider checked; targets made canonical with the settings' AWS region)."""
    app = web.Application(middlewares=[problems], client_max_size=MAX_BODY)
    app[ENGINE] = engine
    app[HEALTH] = health or ProviderHealth({})
    app.on_cleanup.append(lambda app: app[HEALTH].close())
    if canonical is None:
        clients = Clients(settings)
        app.on_cleanup.append(lambda _: _close(clients))
        canonical = partial(canonical_document, clients=clients)
    app[CANONICAL] = _refusing(hooks_checked(slack_checked(canonical, settings), settings))
    app[AUTH] = Authenticator(settings.tokens, settings.allow_anonymous)
    app[METRICS] = metrics_registry or Metrics()
    app[STREAMS] = Streams(heartbeat=heartbeat)
    app.on_shutdown.append(_close_streams)
    app.add_routes(
        [
            web.get("/healthz", healthz),  # HEAD too: load balancers probe with it
            web.get("/readyz", readyz),
            web.get("/metrics", metrics, allow_head=False),
            web.get(f"{rollouts.PREFIX}/openapi.json", openapi_document, allow_head=False),
            *rollouts.routes(),
            web.get(f"{rollouts.PREFIX}/whoami", whoami, allow_head=False),
            *dashboard.routes(),  # the web page at /, its files under /ui
        ]
    )
    slack_actions.install(app, build_actions(settings, engine))
    return app


class _ProblemConnection(RequestHandler):
    """aiohttp's connection handler, answering unparsable requests as problems."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs it; raises if sent already
        request_id = secrets.token_hex(8)
        if status >= 500:
            detail = f"an unexpected error occurred; it was logged with request id {request_id}"
        else:
            reason = " ".join((message or "").split())  # aiohttp's own words, one line
            detail = (
                "the request cannot be read as HTTP (a header with a control character, a "
                f"header line over {MAX_FIELD // 1024} KiB, or malformed framing)"
                + (f": {shorten(reason)}" if reason else "")
            )
        response = ProblemError(status, detail, extra={"request_id": request_id}).response()
        response.headers["X-Request-Id"] = request_id
        response.force_close()  # as aiohttp does: the connection's framing is not to be trusted
        return response


class _ProblemServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _ProblemConnection(self, loop=self._loop, **self._kwargs)


class ApiRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer unparsable requests as problems."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _ProblemServer  # same state, our connection handler
        return server
