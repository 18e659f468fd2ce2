"""A real local HTTP test service for webhook hooks: its answers are the test's to script.

It listens on a real socket (aiohttp, in the test's event loop), answers each path with the
next behaviour queued for it (the last one repeats): ``pass`` (200), ``fail`` (422 with a
body), ``fail-json`` (200 with ``{"status": "fail"}``), ``5xx`` (503), ``slow`` (answers
after ``slow_seconds``), ``moved`` (302) or ``big`` (200 with a 20 kB body). It checks
every request's signature the way the README tells a receiver to, with its own code, and
records what it got, so a test asserts what a real receiver would see.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    signed: bool  # the signature matched the service's secret

    @property
    def payload(self) -> Any:
        return json.loads(self.body)


def verify(secret: bytes, headers: dict[str, str], body: bytes) -> bool:
    """The README's check: HMAC-SHA256 over ``<timestamp>.<body>``, compared in constant time."""
    timestamp = headers.get("X-Canary-Timestamp", "")
    expected = (
        "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    )
    return hmac.compare_digest(expected, headers.get("X-Canary-Signature", ""))


@dataclass
class HookService:
    secret: bytes
    slow_seconds: float = 3.0
    script: dict[str, list[str]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def answers(self, path: str, *behaviours: str) -> str:
        """Queue ``behaviours`` for ``path``; returns its URL."""
        self.script[path] = list(behaviours)
        return self.url(path)

    def calls(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        body = await request.read()
        headers = dict(request.headers)
        self.received.append(Received(path, headers, body, verify(self.secret, headers, body)))
        queue = self.script.get(path, ["pass"])
        behaviour = queue.pop(0) if len(queue) > 1 else queue[0]
        if behaviour == "pass":
            return web.json_response({"status": "pass", "tests": 12})
        if behaviour == "fail":
            return web.Response(status=422, text="checkout: 3 of 12 tests failed (payment step)")
        if behaviour == "fail-json":
            return web.json_response({"status": "fail", "message": "cart total is wrong"})
        if behaviour == "5xx":
            return web.Response(status=503, text="test runner busy")
        if behaviour == "slow":
            await asyncio.sleep(self.slow_seconds)
            return web.json_response({"status": "pass"})
        if behaviour == "moved":
            raise web.HTTPFound("https://tests.example.com/new-smoke")
        if behaviour == "big":
            return web.Response(status=200, text="x" * 20_000)
        raise AssertionError(f"unknown behaviour {behaviour!r}")

    async def start(self) -> HookService:
        app = web.Application()
        app.router.add_post("/{path}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
