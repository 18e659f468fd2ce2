"""What every traffic shifter promises, and the errors it may raise.

A strategy is a thin, idempotent adapter over one backend (a Lambda alias, an HTTPRoute...).
Every write is absolute and read back, so the engine can verify that a weight took effect
instead of assuming it. The errors say what the engine should do next, as in kopf:
``TemporaryError`` (try again later), ``PermanentError`` (trying again will not help),
``ConflictError`` (someone else wrote the target: look before touching it again).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

WEIGHT_TOLERANCE = 0.01
"""Weights read back within this many percentage points of the one written are equal."""


@dataclass(frozen=True)
class TrafficSplit:
    """What a target serves right now, in terms of this rollout's two versions.

    ``canary_weight`` is the canary's share in percent: 0 before the rollout and after a
    rollback, 100 after a promotion. ``None`` means the target serves something that is
    neither this rollout's stable nor its canary (a third version): always drift.
    ``stable`` names the stable version the target routes to, recorded at the start.
    ``settle``: see below.
    """

    canary_weight: float | None
    stable: str | None = None
    detail: str = ""
    settle: float = 0.0
    """Seconds after the write before clients see it (they poll: AppConfig's Agent every
    45 s); the step's bake starts that much later."""

    def matches(self, weight: float) -> bool:
        return (
            self.canary_weight is not None and abs(self.canary_weight - weight) <= WEIGHT_TOLERANCE
        )

    def describe(self) -> str:
        if self.canary_weight is None:
            return f"foreign split ({self.detail})" if self.detail else "foreign split"
        text = f"canary {self.canary_weight:g}%"
        return f"{text} ({self.detail})" if self.detail else text


class StrategyError(Exception):
    """Base of every error a strategy raises. The message is meant for people."""


class TemporaryError(StrategyError):
    """Worth retrying after ``delay`` seconds: throttling, a 5xx, a timeout."""

    def __init__(self, message: str, delay: float = 5.0) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(StrategyError):
    """Retrying will not help until a person fixes something (named in the message)."""


class ConflictError(StrategyError):
    """The target changed under us (a stale revision): observe before writing again."""


class NotImplementedKind(PermanentError):
    """The spec names a target kind whose strategy is not built yet."""


@runtime_checkable
class Strategy(Protocol):
    """One target. All writes are absolute, idempotent, and return the read-back split."""

    kind: ClassVar[str]

    async def validate(self) -> None:
        """Preflight: the target exists, the versions are valid, we have access."""

    async def observe(self) -> TrafficSplit:
        """What the backend really serves now."""

    async def shift(self, canary_percent: float) -> TrafficSplit:
        """Serve ``canary_percent`` of traffic from the canary, the rest from stable."""

    async def promote(self) -> TrafficSplit:
        """Make the canary the stable version at 100% and clean routing up."""

    async def rollback(self) -> TrafficSplit:
        """Serve 100% from the stable version."""
