"""An HTTP client of the daemon's API, for the CLI (and for scripts that prefer Python).

Following a rollout must outlive the connection: a daemon restart or a network blip ends
the event stream, and the client reconnects with ``Last-Event-ID`` (backing off from 0.5 s
to 5 s) until the stream says the rollout has ended. Errors the caller must act on are
``ApiError`` (the daemon answered with a problem) and ``Unreachable`` (it did not answer).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

DEFAULT_URL = "http://127.0.0.1:8080"
PREFIX = "/api/v1"
RETRYABLE = frozenset({502, 503, 504})  # a proxy in front of a restarting daemon
# What canary.model.new_rollout_id makes: milliseconds and 40 random bits, 22 hex digits.
ROLLOUT_ID = re.compile(r"^[0-9a-f]{22}$")


def check_url(url: str) -> str | None:
    """Why ``url`` cannot be the daemon's address (None if it can): http(s)://host[:port]."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "expected http://host:port or https://host[:port]"
    if parts.query or parts.fragment:
        return "a query or fragment has no place in the daemon's address"
    return None


def check_rollout_id(rollout_id: str) -> str | None:
    """Why ``rollout_id`` is not a rollout id (None if it is)."""
    if ROLLOUT_ID.match(rollout_id):
        return None
    return "a rollout id is 22 hex digits, as `canary rollout list` shows"


def rollout_path(rollout_id: str, *rest: str) -> str:
    """The API path of a rollout, its id escaped: an id can never reach another route."""
    return "/".join([f"{PREFIX}/rollouts", quote(rollout_id, safe=""), *rest])


class ApiError(Exception):
    """The daemon answered with an error (an RFC 9457 problem when it could)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        detail = problem.get("detail") or problem.get("title") or f"HTTP {status}"
        super().__init__(f"{detail} (HTTP {status})")

    @property
    def errors(self) -> list[dict[str, str]]:
        return list(self.problem.get("errors") or [])


class Unreachable(Exception):
    """No answer from the daemon: connection refused, DNS, timeout."""


@dataclass
class SseMessage:
    event: str = "message"
    id: str | None = None
    data: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads("\n".join(self.data))


@dataclass(frozen=True)
class StreamEvent:
    """One rollout event from the stream (the API's Event JSON)."""

    data: dict[str, Any]


@dataclass(frozen=True)
class StreamEnd:
    """The rollout ended; ``rollout`` is its final summary."""

    rollout: dict[str, Any]


@dataclass(frozen=True)
class StreamLost:
    """The stream broke; the client reconnects after ``delay`` seconds."""

    reason: str
    delay: float


StreamItem = StreamEvent | StreamEnd | StreamLost


async def parse_sse(content: aiohttp.StreamReader) -> AsyncIterator[SseMessage]:
    """Messages of a text/event-stream body (comments and retry hints are skipped)."""
    message = SseMessage()
    async for raw in content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if message.data:
                yield message
            message = SseMessage()
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            message.data.append(value)
        elif name == "event":
            message.event = value
        elif name == "id":
            message.id = value


class Client:
    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 60):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        headers = {"User-Agent": "canary-cli"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self._session = aiohttp.ClientSession(headers=headers)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use Client as an async context manager"
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """(status, parsed JSON) of a successful call; raises ApiError or Unreachable."""
        all_headers = dict(headers or {})
        if body is not None:
            all_headers["Content-Type"] = content_type
        try:
            async with self.session.request(
                method,
                self.url + path,
                data=body,
                headers=all_headers,
                params=params,
                timeout=aiohttp.ClientTimeout(total=self.timeout, connect=10),
            ) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise Unreachable(f"cannot reach canary at {self.url}: {_why(exc)}") from None
        try:
            data = json.loads(text) if text else {}
        except json.JSONDecodeError:
            data = {"detail": text.strip()[:200] or f"HTTP {status}"}
        if status >= 400:
            raise ApiError(status, data if isinstance(data, dict) else {"detail": str(data)})
        return status, data

    # ------------------------------------------------------------ routes

    async def start(
        self, text: str, *, yaml: bool, idempotency_key: str | None = None
    ) -> tuple[bool, dict[str, Any]]:
        """(created, rollout): created is False when the key had started it already."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        status, rollout = await self.request(
            "POST",
            f"{PREFIX}/rollouts",
            body=text.encode("utf-8"),
            content_type="application/yaml" if yaml else "application/json",
            headers=headers,
        )
        return status == 201, rollout

    async def get(self, rollout_id: str) -> dict[str, Any]:
        return dict((await self.request("GET", rollout_path(rollout_id)))[1])

    async def list_rollouts(self, **params: str) -> dict[str, Any]:
        return dict((await self.request("GET", f"{PREFIX}/rollouts", params=params))[1])

    async def command(self, rollout_id: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        _, rollout = await self.request(
            "POST", rollout_path(rollout_id, name), body=json.dumps(body).encode()
        )
        return dict(rollout)

    async def events(self, rollout_id: str, after: int = 0) -> list[dict[str, Any]]:
        """Every stored event after ``after``, page by page."""
        found: list[dict[str, Any]] = []
        while True:
            _, page = await self.request(
                "GET", rollout_path(rollout_id, "events"), params={"after": str(after)}
            )
            found += page["items"]
            if not page["items"]:
                return found
            after = page["next_after"]

    async def follow(
        self, rollout_id: str, after: int = 0, *, idle: float = 45.0
    ) -> AsyncIterator[StreamItem]:
        """Events after ``after``, live, until the rollout ends; reconnects on its own.

        ``idle``: seconds without a byte (the daemon sends a keep-alive every 15 s) after
        which the connection is presumed dead and reopened.
        """
        last = after
        delay = 0.5
        url = self.url + rollout_path(rollout_id, "events")
        while True:
            headers = {"Accept": "text/event-stream", "Last-Event-ID": str(last)}
            try:
                async with self.session.get(
                    url,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=idle),
                ) as response:
                    if response.status >= 400 and response.status not in RETRYABLE:
                        text = await response.text()
                        try:
                            problem = json.loads(text)
                        except json.JSONDecodeError:
                            problem = {"detail": text.strip()[:200]}
                        raise ApiError(response.status, problem)
                    if response.status < 400:
                        delay = 0.5
                        async for message in parse_sse(response.content):
                            if message.event == "end":
                                yield StreamEnd(message.json()["rollout"])
                                return
                            item = message.json()
                            last = max(last, int(item["seq"]))
                            yield StreamEvent(item)
                        reason = "the daemon closed the stream"
                    else:
                        reason = f"HTTP {response.status}"
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
                reason = _why(exc)
            yield StreamLost(reason, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc)
    return text or type(exc).__name__
