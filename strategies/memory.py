"""An in-memory traffic backend and the strategy that drives it.

Shipped with the package, as httpx ships its mock transport: the engine's tests, ``canary
simulate`` and anyone writing a policy can run a whole rollout without a cloud. The backend
is separate from the strategy so a "new daemon" (a new strategy object) sees the traffic the
old one left, faults can be injected per operation, and a person's hand-edit can be imitated.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from config.targets import Target
from strategies.base import (
    ConflictError,
    PermanentError,
    StrategyError,
    TemporaryError,
    TrafficSplit,
)

Fault = tuple[StrategyError, Callable[[], None] | None]  # the error, and what happens first


@dataclass
class MemoryBackend:
    """The traffic of one target: a primary version, and optionally one weighted extra."""

    primary: str = "stable"
    extra: str | None = None
    extra_weight: float = 0.0  # percent of traffic to ``extra``
    latency: float = 0.0  # seconds each call takes
    exists: bool = True
    revision: int = 0
    calls: list[str] = field(default_factory=list)
    throttled: list[str] = field(default_factory=list)  # calls that throttle() failed
    _faults: dict[str, deque[Fault]] = field(default_factory=dict)
    _throttle_rate: float = 0.0
    _throttle_rng: random.Random = field(default_factory=random.Random)

    def fail(self, operation: str, error: StrategyError, times: int = 1) -> None:
        """The next ``times`` calls of ``operation`` (shift, promote, ...) raise ``error``."""
        self._faults.setdefault(operation, deque()).extend([(error, None)] * times)

    def conflict(
        self, operation: str, by_hand: tuple[str, str | None, float] | None = None
    ) -> None:
        """The next call of ``operation`` loses a race: someone else writes the target just
        before it (``by_hand``: the primary, extra and weight they write; None: only the
        revision moves), so it raises ``ConflictError``, as a stale revision does."""

        def edit() -> None:
            if by_hand is None:
                self.revision += 1
            else:
                self.set_by_hand(*by_hand)

        error = ConflictError("the target changed since it was read (stale revision)")
        self._faults.setdefault(operation, deque()).append((error, edit))

    def throttle(self, rate: float, seed: int = 0) -> None:
        """From now on each call fails with ``TemporaryError`` with probability ``rate``,
        drawn from a generator seeded with ``seed`` (the same calls fail on every run);
        ``throttle(0)`` ends it."""
        self._throttle_rate = rate
        self._throttle_rng = random.Random(seed)

    def set_by_hand(self, primary: str, extra: str | None = None, weight: float = 0.0) -> None:
        """What a person editing the target behind the daemon's back would do."""
        self.primary, self.extra, self.extra_weight = primary, extra, weight
        self.revision += 1

    async def _call(self, operation: str) -> None:
        self.calls.append(operation)
        if self.latency:
            await asyncio.sleep(self.latency)
        queue = self._faults.get(operation)
        if queue:
            error, before = queue.popleft()
            if before is not None:
                before()
            raise error
        if self._throttle_rate and self._throttle_rng.random() < self._throttle_rate:
            self.throttled.append(operation)
            raise TemporaryError("ThrottlingException: Rate exceeded", delay=1.0)


class MemoryStrategy:
    kind: ClassVar[str] = "memory"

    def __init__(self, backend: MemoryBackend, canary: str, stable: str | None = None) -> None:
        self.backend = backend
        self.canary = canary
        self.stable = stable

    def _split(self) -> TrafficSplit:
        b = self.backend
        stable = self.stable or b.primary
        detail = f"{b.primary}" + (f" + {b.extra} at {b.extra_weight:g}%" if b.extra else "")
        if b.primary == stable and b.extra in (None, self.canary):
            weight = b.extra_weight if b.extra == self.canary else 0.0
            return TrafficSplit(weight, stable=stable, detail=detail)
        if b.primary == self.canary and b.extra is None:
            return TrafficSplit(100.0, stable=stable, detail=detail)
        return TrafficSplit(None, stable=stable, detail=detail)

    async def validate(self) -> None:
        await self.backend._call("validate")
        if not self.backend.exists:
            raise PermanentError("the target does not exist; create it before the rollout")
        if self.canary == (self.stable or self.backend.primary):
            raise PermanentError(
                f"the canary {self.canary!r} is already the stable version; name a new version"
            )
        if self.backend.extra not in (None, self.canary):
            raise PermanentError(
                f"the target already routes {self.backend.extra_weight:g}% to a third version "
                f"{self.backend.extra!r}; finish or undo that first"
            )

    async def observe(self) -> TrafficSplit:
        await self.backend._call("observe")
        split = self._split()
        if self.stable is None:
            self.stable = self.backend.primary
        return split

    async def shift(self, canary_percent: float) -> TrafficSplit:
        await self.backend._call("shift")
        b = self.backend
        b.primary = self.stable or b.primary
        b.extra, b.extra_weight = (self.canary, canary_percent) if canary_percent else (None, 0.0)
        b.revision += 1
        return self._split()

    async def promote(self) -> TrafficSplit:
        await self.backend._call("promote")
        b = self.backend
        b.primary, b.extra, b.extra_weight = self.canary, None, 0.0
        b.revision += 1
        return self._split()

    async def rollback(self) -> TrafficSplit:
        await self.backend._call("rollback")
        b = self.backend
        b.primary = self.stable or b.primary
        b.extra, b.extra_weight = None, 0.0
        b.revision += 1
        return self._split()


class MemoryFleet:
    """One ``MemoryBackend`` per target key, made on first use; a strategy factory."""

    def __init__(self, stable: str = "stable") -> None:
        self.backends: dict[str, MemoryBackend] = {}
        self.default_stable = stable

    def backend(self, key: str) -> MemoryBackend:
        if key not in self.backends:
            self.backends[key] = MemoryBackend(primary=self.default_stable)
        return self.backends[key]

    def create(self, target: Target, stable: str | None) -> MemoryStrategy:
        return MemoryStrategy(self.backend(target.key()), target.canary_version, stable)

    @property
    def factory(self) -> Callable[[Target, str | None], MemoryStrategy]:
        return self.create
