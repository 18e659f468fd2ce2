"""All waiting goes through a Clock, so a 30-minute plan can run in milliseconds.

``RealClock`` is wall time. ``VirtualClock`` only moves when told to: ``advance_to`` wakes
every sleeper whose deadline has come, in deadline order. A driver (see
``canary.simulate.drive``) advances it whenever every rollout task is waiting.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""

    def sleep_until(self, deadline: datetime) -> Awaitable[None]:
        """An awaitable done once ``now() >= deadline``.

        Not ``async def``: a virtual clock registers the sleeper when this is called, so a
        driver that sees the caller waiting also sees its deadline.
        """


class RealClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep_until(self, deadline: datetime) -> Awaitable[None]:
        delay = (deadline - self.now()).total_seconds()
        return asyncio.sleep(max(0.0, delay))


class VirtualClock:
    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._now

    def sleep_until(self, deadline: datetime) -> Awaitable[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if deadline <= self._now:
            future.set_result(None)
        else:  # a cancelled sleeper is skipped by advance_to
            heapq.heappush(self._sleepers, (deadline, next(self._seq), future))
        return future

    def next_deadline(self) -> datetime | None:
        """The earliest deadline anyone is still waiting for."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    def advance_to(self, when: datetime) -> None:
        """Move time forward to ``when`` and wake every sleeper that is due."""
        if when > self._now:
            self._now = when
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
