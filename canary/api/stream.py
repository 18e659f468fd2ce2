"""A rollout's events as Server-Sent Events, resumable with ``Last-Event-ID``.

Each event is sent with its ``seq`` as the SSE id, so a client that lost the connection
(a network blip, a daemon restart) reconnects with ``Last-Event-ID`` and misses nothing:
the stream first replays the stored events after that id, then follows live ones. The
engine's subscription is opened *before* the replay, and events are deduplicated by
``seq``; a gap (a subscriber queue that overflowed) is filled from the store. When the
rollout has ended and every event is sent, an ``end`` event carries the final rollout and
the stream closes.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import structlog
from aiohttp import web

from canary.api.context import ENGINE, REQUEST_ID, STREAMS, Streams
from canary.api.problems import ProblemError
from canary.api.views import event_data, rollout_summary
from canary.model import Event, Rollout
from canary.store.base import NotFound, Store

log = structlog.get_logger("canary.api")

CONTENT_TYPE = "text/event-stream"
PAGE = 1000


def wants_stream(request: web.Request) -> bool:
    return CONTENT_TYPE in request.headers.get("Accept", "")


def frame(data: dict[str, Any], *, event_id: int | None = None, kind: str | None = None) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if kind is not None:
        lines.append(f"event: {kind}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


class _Closing(Exception):
    """The daemon is shutting down: end the stream; the client reconnects."""


class EventStream:
    def __init__(self, response: web.StreamResponse, store: Store, rollout_id: str, after: int):
        self.response = response
        self.store = store
        self.rollout_id = rollout_id
        self.last = after

    async def send(self, events: list[Event]) -> None:
        for e in events:
            if e.seq <= self.last:
                continue  # already sent (replayed and then published, or a duplicate)
            await self.response.write(frame(event_data(e), event_id=e.seq))
            self.last = e.seq

    async def catch_up(self) -> None:
        """Send every stored event after the last one sent."""
        while True:
            page = await self.store.events(self.rollout_id, after=self.last, limit=PAGE)
            await self.send(page)
            if len(page) < PAGE:
                return

    async def end(self) -> None:
        await self.catch_up()
        final = await self.store.get(self.rollout_id)
        await self.response.write(frame({"rollout": rollout_summary(final)}, kind="end"))


async def _next(
    queue: asyncio.Queue[tuple[Rollout, list[Event]]], closing: asyncio.Event, heartbeat: float
) -> tuple[Rollout, list[Event]] | None:
    """The next published batch; None after ``heartbeat`` s; raises _Closing on shutdown."""
    getter = asyncio.ensure_future(queue.get())
    closer = asyncio.ensure_future(closing.wait())
    try:
        done, _ = await asyncio.wait(
            {getter, closer}, timeout=heartbeat, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for future in (getter, closer):
            if not future.done():
                future.cancel()
        await asyncio.gather(getter, closer, return_exceptions=True)
    if getter in done and not getter.cancelled():
        return getter.result()
    if closer in done:
        raise _Closing
    return None


async def stream_events(request: web.Request, rollout_id: str, after: int) -> web.StreamResponse:
    engine = request.app[ENGINE]
    streams = request.app[STREAMS]
    queue = engine.subscribe()  # before the replay, so nothing falls between the two
    try:
        try:
            await engine.store.get(rollout_id)  # a 404 is still possible before the stream
        except NotFound:
            raise ProblemError(404, f"no rollout {rollout_id!r}") from None
        response = web.StreamResponse(
            headers={
                "Content-Type": CONTENT_TYPE,
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # proxies must not buffer the stream
                "X-Request-Id": REQUEST_ID.get(),
            }
        )
        await response.prepare(request)
        stream = EventStream(response, engine.store, rollout_id, after)
        try:
            await follow(stream, queue, streams)
        except (ConnectionResetError, _Closing):
            pass  # the client left, or the daemon stops: the client reconnects
        except Exception:  # the headers are sent: end the stream, the client reconnects
            log.exception("api.stream_failed", rollout_id=rollout_id, request_id=REQUEST_ID.get())
        return response
    finally:
        engine.unsubscribe(queue)


async def follow(
    stream: EventStream, queue: asyncio.Queue[tuple[Rollout, list[Event]]], streams: Streams
) -> None:
    """Replay, then send live events until the rollout has ended, then the end event."""
    await stream.response.write(b"retry: 1000\n\n")
    await stream.catch_up()
    rollout = await stream.store.get(stream.rollout_id)
    while rollout.phase.live:
        batch = await _next(queue, streams.closing, streams.heartbeat)
        if batch is None:
            await stream.response.write(b": keep-alive\n\n")
            continue
        saved, events = batch
        if saved.id != stream.rollout_id or not events:
            continue
        rollout = saved
        if events[0].seq > stream.last + 1:  # events were dropped: read the gap
            await stream.catch_up()
        await stream.send(events)
    await stream.end()


async def stream_rollouts(
    request: web.Request, phase: str | None, target: str | None
) -> web.StreamResponse:
    """Every change of a rollout (that ``phase`` and ``target`` select) as a ``rollout`` event
    with its summary, until the client leaves: what a live list needs after its first page.
    Changes are not stored as such, so there is no replay: a client subscribes, then reads
    the list."""
    engine = request.app[ENGINE]
    streams = request.app[STREAMS]
    queue = engine.subscribe()
    try:
        response = web.StreamResponse(
            headers={
                "Content-Type": CONTENT_TYPE,
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
                "X-Request-Id": REQUEST_ID.get(),
            }
        )
        await response.prepare(request)
        try:
            await response.write(b"retry: 1000\n\n")
            while True:
                batch = await _next(queue, streams.closing, streams.heartbeat)
                if batch is None:
                    await response.write(b": keep-alive\n\n")
                    continue
                saved = batch[0]
                if phase is not None and saved.phase.value != phase:
                    continue
                if target is not None and target not in {t.key for t in saved.targets}:
                    continue
                await response.write(frame({"rollout": rollout_summary(saved)}, kind="rollout"))
        except (ConnectionResetError, _Closing):
            pass  # the client left, or the daemon stops: the client reconnects
        return response
    finally:
        engine.unsubscribe(queue)
