"""The daemon's HTTP application.

``/healthz`` answers as long as the process serves requests and the engine runs, which is
what a container orchestrator needs to decide on a restart.
"""

from __future__ import annotations

from aiohttp import web

from canary import __version__
from canary.engine import Engine
from config.settings import Settings

ENGINE: web.AppKey[Engine] = web.AppKey("engine", Engine)


async def healthz(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    if not engine.running:
        return web.json_response({"status": "starting", "version": __version__}, status=503)
    return web.json_response({"status": "ok", "version": __version__})


def build_app(engine: Engine, settings: Settings) -> web.Application:
    app = web.Application()
    app[ENGINE] = engine
    app.router.add_get("/healthz", healthz)
    return app
