"""Slack notifiers: bot-token mode (``SlackNotifier``: one message per rollout, kept up to
date, and a thread of its events) and incoming-webhook mode (``WebhookNotifier``: one
message per event).

Why they are built like this:

* ``notify`` only puts the batch on this notifier's own bounded queue and returns: a slow
  or dead Slack never holds the engine's notifier task, let alone a rollout. One task
  drains the queue in order, so a rollout's replies arrive in the order of its events and
  each goes to that rollout's own thread (``thread_ts`` of its message, never another's).
* Retries live in one place (``_call``, tenacity): network errors and 5xx are retried with
  backoff, a 429 waits the ``Retry-After`` Slack asked for. slack_sdk's own retry handlers
  are turned off so nothing retries twice. A call that still fails is counted
  (``canary_notification_failures_total{notifier="SlackNotifier"}``, or
  ``"WebhookNotifier"``) and logged, and delivery goes on with the next one.
* Events are delivered once: batches are deduplicated by (rollout, event seq).
* The message's channel and ts are kept in the store (``Store.set_message_ref``), so a
  restarted daemon updates the same message and threads under it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from canary.events import COMMAND_NAMES, EventKind
from canary.model import Event, Rollout
from canary.observer import Observer, safely
from canary.slack.render import LastAction, Message, about, reply, rollout_message
from canary.store.base import Store

log = structlog.get_logger("canary.slack")

NOTIFIER = "slack"  # the store's name for this notifier's message refs


@dataclass(frozen=True)
class Delivery:
    """How hard to try, per call."""

    attempts: int = 8  # waits 1+2+4+8+16+30+30 s: rides out 90 s of trouble
    first_wait: float = 1.0  # seconds; doubles per attempt
    max_wait: float = 30.0
    max_retry_after: float = 300.0  # a 429 asking for longer than this waits this long
    queue_size: int = 1000
    drain: float = 5.0  # seconds ``close`` lets queued messages go out
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)


class Undelivered(Exception):
    """A Slack call that failed for good (after retries, or not retryable)."""


class WebhookRefused(Exception):
    """An incoming webhook answered with an error status (it does not raise by itself)."""

    def __init__(self, status: int, body: str, headers: Mapping[str, Any]) -> None:
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status = status
        self.headers = headers


def _status(exc: BaseException) -> tuple[int, Mapping[str, Any]] | None:
    if isinstance(exc, SlackApiError):
        return int(exc.response.status_code), exc.response.headers
    if isinstance(exc, WebhookRefused):
        return exc.status, exc.headers
    return None


def retryable(exc: BaseException) -> bool:
    answered = _status(exc)
    if answered is not None:
        return answered[0] == 429 or answered[0] >= 500
    # aiohttp.ClientError covers refused and reset connections; TimeoutError no answer
    return isinstance(exc, aiohttp.ClientError | TimeoutError)


def retry_after(exc: BaseException | None) -> float | None:
    """Seconds a 429 asks us to wait, if ``exc`` is one."""
    answered = _status(exc) if exc is not None else None
    if answered is None or answered[0] != 429:
        return None
    try:
        return max(0.0, float(answered[1].get("Retry-After", 1)))
    except (TypeError, ValueError):
        return 1.0


def describe(exc: BaseException) -> str:
    """One line about a failed call, with nothing from the request (no token, no URL)."""
    if isinstance(exc, SlackApiError):
        data = exc.response.data
        error = data.get("error") if isinstance(data, dict) else None
        return f"HTTP {exc.response.status_code}" + (f": {error}" if error else "")
    if isinstance(exc, WebhookRefused):
        return str(exc)
    if isinstance(exc, aiohttp.ClientConnectionError):
        return type(exc).__name__  # its text names the host, and a webhook URL is a secret
    return f"{type(exc).__name__}: {exc}"


def command_of(e: Event) -> str | None:
    """The command's name if ``e`` records one (``command.abort``: "abort")."""
    return next((name for kind, name in COMMAND_NAMES.items() if kind == e.kind), None)


@dataclass
class _Thread:
    """What this daemon knows of one rollout's Slack message."""

    channel: str
    ts: str


class QueuedNotifier:
    """A notifier with a queue and a task of its own: ``notify`` never waits on Slack.

    Subclasses say how to ``_deliver`` a batch; ``_call`` is where every Slack call is
    retried. ``close()`` it when the engine stops (the bus does).
    """

    def __init__(
        self,
        *,
        mention: str | None = None,
        observer: Observer | None = None,
        delivery: Delivery | None = None,
    ) -> None:
        self._mention = mention
        self._observer = observer
        self._delivery = delivery or Delivery()
        self._queue: asyncio.Queue[tuple[Rollout, list[Event]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._seen: dict[str, int] = {}  # rollout id -> highest event seq queued

    async def notify(self, rollout: Rollout, events: Sequence[Event]) -> None:
        fresh = [e for e in events if e.seq > self._seen.get(rollout.id, 0)]
        if not fresh:
            return
        self._seen[rollout.id] = max(e.seq for e in fresh)
        if self._queue is None:
            self._queue = asyncio.Queue(self._delivery.queue_size)
            self._task = asyncio.create_task(self._run(), name="canary-slack")
        try:
            self._queue.put_nowait((rollout, fresh))
        except asyncio.QueueFull:
            self._failed(rollout, "queue", f"queue full ({self._delivery.queue_size} batches)")

    async def close(self) -> None:
        """Send what is queued (for up to ``delivery.drain`` seconds), then stop."""
        if self._task is None or self._queue is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout=self._delivery.drain)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        self._queue = None

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            rollout, events = await queue.get()
            try:
                await self._deliver(rollout, events)
            except Undelivered:
                pass  # counted and logged where it failed
            except Exception as exc:  # never let one batch stop delivery of the next
                self._failed(rollout, "deliver", describe(exc))
            finally:
                if rollout.phase.terminal:  # nothing more will come: forget it
                    self._seen.pop(rollout.id, None)
                queue.task_done()

    async def _deliver(self, r: Rollout, events: list[Event]) -> None:
        raise NotImplementedError

    async def _call(
        self, r: Rollout, method: str, call: Callable[..., Awaitable[Any]], **args: Any
    ) -> Any:
        """One Slack call, retried on transient errors; ``Undelivered`` once given up."""
        d = self._delivery
        backoff = wait_exponential(multiplier=d.first_wait, max=d.max_wait)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            asked = retry_after(exc)
            return min(asked, d.max_retry_after) if asked is not None else backoff(state)

        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(retryable),
                wait=wait,
                stop=stop_after_attempt(d.attempts),
                sleep=d.sleep,
                reraise=True,
            ):
                with attempt:
                    return await call(**args)
        except Exception as exc:
            self._failed(r, method, describe(exc))
            raise Undelivered(method) from exc
        raise AssertionError("unreachable: tenacity returns or raises")

    def _failed(self, r: Rollout, method: str, error: str) -> None:
        if self._observer is not None:
            safely(self._observer.notification_failed, type(self).__name__)
        log.warning("slack.failed", rollout_id=r.id, rollout=r.name, call=method, error=error)


class SlackNotifier(QueuedNotifier):
    """Bot-token mode: one message per rollout, updated in place, and its thread."""

    def __init__(
        self,
        client: AsyncWebClient,
        store: Store,
        default_channel: str,
        *,
        mention: str | None = None,
        observer: Observer | None = None,
        delivery: Delivery | None = None,
        buttons: bool = False,
    ) -> None:
        super().__init__(mention=mention, observer=observer, delivery=delivery)
        self._buttons = buttons  # Promote / Pause / Abort (with a signing secret)
        self._client = client
        self._store = store
        self._default_channel = default_channel
        self._threads: dict[str, _Thread] = {}
        self._gates: dict[str, list[dict[str, Any]]] = {}  # latest gate results
        self._last: dict[str, LastAction] = {}  # latest command given by a person

    async def _deliver(self, r: Rollout, events: list[Event]) -> None:
        self._remember(r, events)
        message = rollout_message(r, self._gates.get(r.id, []), self._last.get(r.id), self._buttons)
        thread, created = await self._thread(r, message)
        by: str | None = None
        for e in events:
            if command_of(e) is not None and e.actor:
                by = e.actor
            text = reply(e, self._mention, by)
            if text is None:
                continue
            with contextlib.suppress(Undelivered):
                await self._call(
                    r,
                    "chat.postMessage",
                    self._client.chat_postMessage,
                    channel=thread.channel,
                    thread_ts=thread.ts,
                    text=text.text,
                    blocks=text.blocks,
                )
        if not created:
            await self._call(
                r,
                "chat.update",
                self._client.chat_update,
                channel=thread.channel,
                ts=thread.ts,
                text=message.text,
                blocks=message.blocks,
            )
        if r.phase.terminal:  # nothing more will happen to it
            self._threads.pop(r.id, None)
            self._gates.pop(r.id, None)
            self._last.pop(r.id, None)

    def _remember(self, r: Rollout, events: list[Event]) -> None:
        for e in events:
            if e.kind == EventKind.ANALYSIS_EVALUATED:
                self._gates[r.id] = list(e.data.get("results", []))
            command = command_of(e)
            if command is not None and e.actor:
                self._last[r.id] = LastAction(command, e.actor)

    async def _thread(self, r: Rollout, message: Message) -> tuple[_Thread, bool]:
        """The rollout's message (posted now if it has none yet), and whether it is new."""
        thread = self._threads.get(r.id)
        if thread is None:
            ref = await self._store.message_ref(r.id, NOTIFIER)
            if ref is not None:
                channel, _, ts = ref.partition(" ")
                thread = self._threads[r.id] = _Thread(channel, ts)
        if thread is not None:
            return thread, False
        channel = (r.spec.notify.slack and r.spec.notify.slack.channel) or self._default_channel
        answer = await self._call(
            r,
            "chat.postMessage",
            self._client.chat_postMessage,
            channel=channel,
            text=message.text,
            blocks=message.blocks,
        )
        thread = self._threads[r.id] = _Thread(str(answer["channel"]), str(answer["ts"]))
        await self._store.set_message_ref(r.id, NOTIFIER, f"{thread.channel} {thread.ts}")
        return thread, True


class WebhookNotifier(QueuedNotifier):
    """Incoming-webhook mode: one message per event worth telling, to the webhook's channel.

    The webhook's URL is its secret: it is never logged (``describe`` leaves it out).
    """

    def __init__(
        self,
        client: AsyncWebhookClient,
        *,
        mention: str | None = None,
        observer: Observer | None = None,
        delivery: Delivery | None = None,
    ) -> None:
        super().__init__(mention=mention, observer=observer, delivery=delivery)
        self._client = client

    async def _deliver(self, r: Rollout, events: list[Event]) -> None:
        by: str | None = None
        for e in events:
            if command_of(e) is not None and e.actor:
                by = e.actor
            message = reply(e, self._mention, by)
            if message is None:
                continue
            message = about(r, message)
            with contextlib.suppress(Undelivered):
                await self._call(r, "webhook", self._send, text=message.text, blocks=message.blocks)

    async def _send(self, **args: Any) -> None:
        answer = await self._client.send(**args)
        if answer.status_code != 200:
            raise WebhookRefused(answer.status_code, answer.body or "", answer.headers or {})
