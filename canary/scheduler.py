"""When each rollout runs: one asyncio task per live rollout, its wake-up, its lock.

A task loops over ``step(rollout_id)`` (given by the engine: decide, perform, store) and
sleeps on the ``Clock`` whenever the step says to wait, until the time comes or a command
wakes it. A task never dies silently: an unexpected error is logged and the step retried
with backoff. ``quiescent()`` tells a virtual-time driver when every task is waiting, so it
can move the clock on.

Nothing outlives its rollout: a task's wake-up and wait are dropped when the task ends (in
the same tick as its last step, so a command arriving then finds no task and starts a new
one), and a rollout's lock as soon as nobody holds or waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import structlog

from canary.clock import Clock
from canary.machine import Action, Done, RetryPolicy, Wait
from canary.store.base import LeaseLost, NotFound, Unreadable

log = structlog.get_logger("canary.engine")
T = TypeVar("T")

Step = Callable[[str], Awaitable[Action | None]]


@dataclass
class _Lock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # holding or waiting


class Scheduler:
    def __init__(
        self,
        clock: Clock,
        step: Step,
        *,
        step_retry: float,
        on_end: Callable[[str], None] = lambda rollout_id: None,
    ) -> None:
        self.clock = clock
        self._step = step
        self._on_end = on_end
        self._backoff = RetryPolicy(first=step_retry, cap=60.0)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._waiting: dict[str, datetime | None] = {}  # deadline; None: until woken
        self._locks: dict[str, _Lock] = {}
        self.stopping = False

    # ------------------------------------------------------------ tasks

    def spawn(self, rid: str) -> None:
        if self.stopping:  # stored; the next engine over this store runs it
            return
        self._wake[rid] = asyncio.Event()
        task = asyncio.create_task(self._run(rid), name=f"rollout-{rid}")
        self._tasks[rid] = task
        task.add_done_callback(functools.partial(self._task_done, rid))

    def wake(self, rid: str) -> None:
        """Make the rollout's task decide again now, or start one if it has none."""
        task = self._tasks.get(rid)
        if task is not None and not task.done():
            self._wake[rid].set()
        else:
            self.spawn(rid)

    def wake_running(self, rid: str) -> None:
        """Make the rollout's task decide again now, if it has one; never start one."""
        task = self._tasks.get(rid)
        if task is not None and not task.done():
            self._wake[rid].set()

    def running(self, rid: str) -> bool:
        task = self._tasks.get(rid)
        return task is not None and not task.done()

    def consume_wake(self, rid: str) -> None:
        """The step about to decide sees the newest state: a wake-up before it is spent."""
        self._wake[rid].clear()

    async def stop(self, grace: float) -> None:
        """Let in-flight steps finish (up to ``grace`` seconds), then end every task."""
        self.stopping = True
        for wake in self._wake.values():
            wake.set()
        tasks = [t for t in self._tasks.values() if not t.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                log.warning("engine.stop_timeout", task=task.get_name())
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def start(self) -> None:
        self.stopping = False

    def held(self) -> dict[str, int]:
        """How many rollouts each per-rollout map holds (all 0 once every task has ended)."""
        return {
            "tasks": len(self._tasks),
            "wake": len(self._wake),
            "waiting": len(self._waiting),
            "locks": len(self._locks),
        }

    @contextlib.asynccontextmanager
    async def lock(self, rid: str) -> AsyncIterator[None]:
        """The rollout's lock: one reader-writer of its record at a time."""
        entry = self._locks.setdefault(rid, _Lock())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:  # nobody holds or waits: the next user makes a new one
                del self._locks[rid]

    async def interruptible(self, rid: str, work: Coroutine[Any, Any, T]) -> T | None:
        """Run read-only ``work``, giving up on it as soon as a command wakes the rollout."""
        job = asyncio.ensure_future(work)
        waker = asyncio.ensure_future(self._wake[rid].wait())
        await asyncio.wait({job, waker}, return_when=asyncio.FIRST_COMPLETED)
        waker.cancel()
        await asyncio.gather(waker, return_exceptions=True)
        if job.done():
            return job.result()
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)
        return None

    # ------------------------------------------------------------ for virtual time

    def quiescent(self) -> bool:
        """Every rollout task is waiting for a time that has not come, or has ended."""
        now = self.clock.now()
        for rid, task in self._tasks.items():
            if task.done():
                continue
            if rid not in self._waiting or self._wake[rid].is_set():
                return False
            until = self._waiting[rid]
            if until is not None and until <= now:
                return False
        return True

    def active(self) -> bool:
        return any(not t.done() for t in self._tasks.values())

    async def settle(self) -> None:
        """Yield until ``quiescent()``: what a virtual-time driver waits for."""
        spins = 0
        while not self.quiescent():
            spins += 1
            await asyncio.sleep(0 if spins < 100 else 0.001)

    # ------------------------------------------------------------ the loop

    async def _run(self, rid: str) -> None:
        structlog.contextvars.bind_contextvars(rollout_id=rid)
        failures = 0
        try:
            while not self.stopping:
                action: Action | None
                try:
                    action = await self._step(rid)
                    failures = 0
                except Unreadable as exc:
                    log.error(
                        "rollout.quarantined",
                        detail="its record no longer validates: canary stops driving it and "
                        "leaves its traffic as it is; abort it to roll it back",
                        error=str(exc),
                    )
                    return
                except NotFound:
                    log.error("rollout.vanished", detail="the store no longer has this rollout")
                    return
                except LeaseLost as exc:
                    log.warning(
                        "rollout.released",
                        detail="this replica no longer holds the rollout's lease; the holder "
                        "drives it",
                        error=str(exc),
                    )
                    return
                except Exception as exc:
                    failures += 1
                    delay = self._backoff.delay(failures)
                    log.exception("rollout.step_failed", retry_in=delay, error=str(exc))
                    action = Wait(self.clock.now() + timedelta(seconds=delay))
                if isinstance(action, Done):
                    log.info("rollout.task_finished")
                    return
                if isinstance(action, Wait):
                    await self._wait(rid, action)
        finally:
            # No await since the last step: a command waiting for the lock runs after this.
            self._forget(rid, asyncio.current_task())

    async def _wait(self, rid: str, action: Wait) -> None:
        wake = self._wake[rid]
        if wake.is_set() or self.stopping:
            wake.clear()
            return
        self._waiting[rid] = action.until
        try:
            if action.until is None:
                await wake.wait()
            else:
                sleeper = asyncio.ensure_future(self.clock.sleep_until(action.until))
                waker = asyncio.ensure_future(wake.wait())
                _, pending = await asyncio.wait(
                    {sleeper, waker}, return_when=asyncio.FIRST_COMPLETED
                )
                for future in pending:
                    future.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        finally:
            self._waiting.pop(rid, None)
            wake.clear()

    def _forget(self, rid: str, task: asyncio.Task[Any] | None) -> None:
        if task is None or self._tasks.get(rid) is not task:
            return  # already forgotten, or a newer task runs this rollout
        del self._tasks[rid]
        self._wake.pop(rid, None)
        self._waiting.pop(rid, None)
        self._on_end(rid)

    def _task_done(self, rid: str, task: asyncio.Task[None]) -> None:
        self._forget(rid, task)  # a task cancelled before it ever ran has no finally
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("rollout.task_died", task=task.get_name(), error=repr(exc))
