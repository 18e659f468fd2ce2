"""Where stored events go: the log, the observer, subscribers and notifiers.

Every batch of events the engine stores is published once, after the save. Subscribers (the
API's event streams) get it on a bounded queue each; notifiers get it through one bounded
queue drained by a task of its own, so a slow or failing notifier never holds a rollout
back. A full queue drops the batch with a warning: a stream reads the gap from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Protocol

import structlog

from canary.model import Event, Rollout
from canary.observer import Observer, safely

log = structlog.get_logger("canary.engine")

Batch = tuple[Rollout, list[Event]]


class Notifier(Protocol):
    """Hears about every stored event; a failure here never holds a rollout back."""

    async def notify(self, rollout: Rollout, events: Sequence[Event]) -> None: ...


class EventBus:
    def __init__(
        self, notifiers: Sequence[Notifier], observer: Observer | None, queue_size: int
    ) -> None:
        self._notifiers = list(notifiers)
        self._observer = observer
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[Batch]] = set()
        self._notify_queue: asyncio.Queue[Batch] | None = None
        self._notify_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._notifiers and self._notify_task is None:
            self._notify_queue = asyncio.Queue(self._queue_size)
            self._notify_task = asyncio.create_task(self._dispatch(), name="canary-notify")

    async def stop(self) -> None:
        """Deliver what is queued (for up to 5 s), then stop the notifier task; notifiers
        with a ``close()`` (those with a task of their own) are closed after it."""
        if self._notify_task is None:
            return
        assert self._notify_queue is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._notify_queue.join(), timeout=5)
        self._notify_task.cancel()
        await asyncio.gather(self._notify_task, return_exceptions=True)
        self._notify_task = None
        for notifier in self._notifiers:
            close = getattr(notifier, "close", None)
            if close is not None:
                await close()

    def subscribe(self) -> asyncio.Queue[Batch]:
        """A queue of (rollout, new events) for every save; drop it with unsubscribe()."""
        queue: asyncio.Queue[Batch] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Batch]) -> None:
        self._subscribers.discard(queue)

    @property
    def subscribed(self) -> bool:
        return bool(self._subscribers)

    def relay(self, r: Rollout, events: list[Event]) -> None:
        """Events another replica stored: to subscribers (event streams) only. The log,
        metrics and notifiers heard them on the replica that stored them."""
        for queue in list(self._subscribers):
            try:
                queue.put_nowait((r, events))
            except asyncio.QueueFull:
                log.warning("events.dropped", rollout_id=r.id, count=len(events))

    def publish(self, r: Rollout, events: list[Event]) -> None:
        for e in events:
            log.info(
                e.kind,
                rollout_id=r.id,
                rollout=r.name,
                targets=",".join(t.key for t in r.targets),
                step=e.step,
                weight=e.weight,
                phase=r.phase.value,
                message=e.message,
            )
        if not events:
            return
        if self._observer is not None:
            safely(self._observer.saved, r, events)
        queues = [*self._subscribers, *([self._notify_queue] if self._notify_queue else [])]
        for queue in queues:
            try:
                queue.put_nowait((r, events))
            except asyncio.QueueFull:
                log.warning("events.dropped", rollout_id=r.id, count=len(events))

    async def _dispatch(self) -> None:
        assert self._notify_queue is not None
        while True:
            r, events = await self._notify_queue.get()
            try:
                for notifier in self._notifiers:
                    try:
                        await notifier.notify(r, events)
                    except Exception as exc:
                        if self._observer is not None:
                            safely(self._observer.notification_failed, type(notifier).__name__)
                        log.warning(
                            "notify.failed",
                            notifier=type(notifier).__name__,
                            rollout_id=r.id,
                            error=str(exc),
                        )
            finally:
                self._notify_queue.task_done()
