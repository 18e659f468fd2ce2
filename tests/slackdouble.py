"""A local stand-in for the parts of Slack's Web API canary uses, for the real slack_sdk.

It checks requests against Slack's documented contract, as Slack would refuse them:
``Authorization: Bearer <token>`` (else ``not_authed`` / ``invalid_auth``); JSON bodies;
``channel`` required; ``text`` or ``blocks`` (at most 50, each with a ``type``, section text
at most 3000 characters); ``thread_ts`` must name a message in that channel;
``chat.update`` needs the channel *id* (as returned by ``chat.postMessage``) and the ``ts``
of a message in it (else ``channel_not_found`` / ``message_not_found``).

Incoming webhooks (``POST /services/T.../B.../...``) take a JSON ``text`` and/or ``blocks``
and answer ``ok`` as text/plain, or ``no_service`` (404) for another URL and
``invalid_payload`` (400) for a body without text.

Faults are scripted: ``fail(status, times, headers)`` answers the next calls with an error
status; ``down = True`` answers every call with 503.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class Posted:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None
    updates: int = 0

    @property
    def shown(self) -> str:
        """Everything a person reads in it: the blocks' text."""
        parts = []
        for block in self.blocks:
            if "text" in block:
                parts.append(block["text"]["text"])
            for element in block.get("elements", []):
                parts.append(element.get("text", ""))
        return "\n".join(parts)


@dataclass
class Fault:
    status: int
    times: int
    headers: dict[str, str] = field(default_factory=dict)


class SlackDouble:
    def __init__(self, token: str = "xoxb-test-token") -> None:
        self.token = token
        self.channels = {"#deploys": "C0DEPLOYS", "#payments": "C0PAYMENT"}
        self.messages: list[Posted] = []  # in the order they were posted
        self.calls: list[tuple[str, dict[str, Any]]] = []  # every request that arrived
        self.faults: list[Fault] = []
        self.down = False
        self.webhook_path = "/services/T0TEAM/B0HOOK/s3cr3tw3bh00k"
        self.webhook_posts: list[Posted] = []
        self.webhook_down: Callable[[], bool] = lambda: False
        self.groups: dict[str, list[str]] = {}  # user group id -> member user ids
        self.ephemeral: list[dict[str, Any]] = []  # what was posted to response_urls
        self._ts = itertools.count(1)
        app = web.Application()
        app.router.add_post("/api/{method}", self._handle)
        app.router.add_get("/api/{method}", self._handle)
        app.router.add_post("/services/{path:.*}", self._webhook)
        app.router.add_post("/actions/{path:.*}", self._response_url)
        self.server = TestServer(app)

    @property
    def api_url(self) -> str:
        return str(self.server.make_url("/api/"))

    def response_url(self, name: str) -> str:
        return str(self.server.make_url(f"/actions/{name}"))

    @property
    def webhook_url(self) -> str:
        return str(self.server.make_url(self.webhook_path))

    async def __aenter__(self) -> SlackDouble:
        await self.server.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.close()

    def fail(self, status: int, times: int = 1, headers: dict[str, str] | None = None) -> None:
        self.faults.append(Fault(status, times, headers or {}))

    # ------------------------------------------------------------ what tests read

    def top_level(self) -> list[Posted]:
        return [m for m in self.messages if m.thread_ts is None]

    def thread(self, parent: Posted) -> list[Posted]:
        return [
            m for m in self.messages if m.thread_ts == parent.ts and m.channel == parent.channel
        ]

    # ------------------------------------------------------------ the API

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        body: dict[str, Any] = await request.json() if request.can_read_body else {}
        body |= dict(request.query)
        self.calls.append((method, body))
        if self.down:
            return web.Response(status=503, text="upstream unavailable")
        if self.faults:
            fault = self.faults[0]
            fault.times -= 1
            if fault.times <= 0:
                self.faults.pop(0)
            data = {"ok": False, "error": "ratelimited" if fault.status == 429 else "fatal_error"}
            return web.json_response(data, status=fault.status, headers=fault.headers)
        auth = request.headers.get("Authorization")
        if auth is None:
            return self._error("not_authed")
        if auth != f"Bearer {self.token}":
            return self._error("invalid_auth")
        if method == "usergroups.users.list":
            if body.get("usergroup") not in self.groups:
                return self._error("no_such_subteam")
            return web.json_response({"ok": True, "users": self.groups[body["usergroup"]]})
        if request.content_type != "application/json":
            return self._error("invalid_form_data")
        if method == "chat.postMessage":
            return self._post(body)
        if method == "chat.update":
            return self._update(body)
        return self._error("unknown_method")

    async def _webhook(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json() if request.can_read_body else {}
        self.calls.append(("webhook", body))
        if self.webhook_down():
            return web.Response(status=503, text="service_unavailable")
        if request.path != self.webhook_path:
            return web.Response(status=404, text="no_service")
        if request.content_type != "application/json" or self._content_error(body):
            return web.Response(status=400, text="invalid_payload")
        self.webhook_posts.append(
            Posted("C0HOOK", str(len(self.webhook_posts)), body.get("text", ""), body["blocks"])
        )
        return web.Response(text="ok")

    async def _response_url(self, request: web.Request) -> web.Response:
        self.ephemeral.append(await request.json())
        return web.Response(text="ok")

    def _error(self, error: str) -> web.Response:
        return web.json_response({"ok": False, "error": error})

    def _content_error(self, body: dict[str, Any]) -> str | None:
        blocks = body.get("blocks")
        if not body.get("text") and not blocks:
            return "no_text"
        if blocks is not None:
            if not isinstance(blocks, list) or len(blocks) > 50:
                return "invalid_blocks"
            for block in blocks:
                if "type" not in block:
                    return "invalid_blocks"
                if len(block.get("text", {}).get("text", "")) > 3000:
                    return "invalid_blocks"
        return None

    def _channel_id(self, channel: Any) -> str | None:
        if not isinstance(channel, str):
            return None
        if channel in self.channels.values():
            return channel
        return self.channels.get(channel)

    def _post(self, body: dict[str, Any]) -> web.Response:
        channel = self._channel_id(body.get("channel"))
        if channel is None:
            return self._error("channel_not_found")
        problem = self._content_error(body)
        if problem:
            return self._error(problem)
        thread_ts = body.get("thread_ts")
        if thread_ts is not None and not any(
            m.ts == thread_ts and m.channel == channel for m in self.top_level()
        ):
            return self._error("thread_not_found")
        ts = f"1767225600.{next(self._ts):06d}"
        self.messages.append(
            Posted(channel, ts, body.get("text", ""), body.get("blocks", []), thread_ts)
        )
        return web.json_response({"ok": True, "channel": channel, "ts": ts})

    def _update(self, body: dict[str, Any]) -> web.Response:
        channel = body.get("channel")
        if channel not in self.channels.values():  # chat.update takes the id, not a name
            return self._error("channel_not_found")
        found = [m for m in self.messages if m.ts == body.get("ts") and m.channel == channel]
        if not found:
            return self._error("message_not_found")
        problem = self._content_error(body)
        if problem:
            return self._error(problem)
        message = found[0]
        message.text = body.get("text", "")
        message.blocks = body.get("blocks", [])
        message.updates += 1
        return web.json_response({"ok": True, "channel": channel, "ts": message.ts})
