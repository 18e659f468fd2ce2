"""Hooks through which the engine reports what it does, for metrics.

The engine must not depend on a metrics library, and a metrics bug must never hold a
rollout back: the engine calls an ``Observer`` (a no-op one by default), and the daemon
plugs in the Prometheus one (``canary.metrics``). Strategies and providers are wrapped so
every backend call and provider query is timed at one place, whatever the call site.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar, Protocol, TypeVar

import structlog

from analysis.base import Measurement, MetricProvider, MetricQuery, ProviderError, Window
from canary.model import Event, Rollout
from config.targets import Target
from strategies.base import Strategy, TrafficSplit

log = structlog.get_logger("canary.observer")
T = TypeVar("T")


class Observer(Protocol):
    """Told about every stored change, backend call, provider query and notifier failure."""

    def saved(self, rollout: Rollout, events: Sequence[Event]) -> None:
        """``events`` were stored for ``rollout`` (its state after them)."""

    def backend_call(
        self, strategy: str, operation: str, seconds: float, error: str | None
    ) -> None:
        """One strategy call; ``error`` is the exception's class name, or None."""

    def provider_query(self, provider: str, seconds: float, error: str | None) -> None:
        """One provider round trip (a batch of queries)."""

    def notification_failed(self, notifier: str) -> None: ...


class NullObserver:
    def saved(self, rollout: Rollout, events: Sequence[Event]) -> None:
        pass

    def backend_call(
        self, strategy: str, operation: str, seconds: float, error: str | None
    ) -> None:
        pass

    def provider_query(self, provider: str, seconds: float, error: str | None) -> None:
        pass

    def notification_failed(self, notifier: str) -> None:
        pass


def safely(report: Callable[..., None], *args: Any) -> None:
    """Call ``report(*args)``; an observer that raises is logged, never propagated."""
    try:
        report(*args)
    except Exception as exc:
        log.warning("observer.failed", error=repr(exc))


async def _timed(
    call: Awaitable[T], report: Callable[[float, str | None], None], *, error_of: Any = None
) -> T:
    started = time.perf_counter()
    error: str | None = None
    try:
        result = await call
        if error_of is not None:
            error = error_of(result)
        return result
    except BaseException as exc:  # a cancellation (timeout) is an error of the call too
        error = type(exc).__name__
        raise
    finally:
        elapsed = time.perf_counter() - started
        safely(report, elapsed, error)


class ObservedStrategy:
    """A strategy whose every call is timed and reported, errors included."""

    kind: ClassVar[str] = "observed"

    def __init__(self, inner: Strategy, observer: Observer) -> None:
        self.inner = inner
        self.observer = observer
        self.strategy_kind = str(getattr(inner, "kind", type(inner).__name__))

    def _report(self, operation: str) -> Callable[[float, str | None], None]:
        def report(seconds: float, error: str | None) -> None:
            self.observer.backend_call(self.strategy_kind, operation, seconds, error)

        return report

    async def validate(self) -> None:
        await _timed(self.inner.validate(), self._report("validate"))

    async def observe(self) -> TrafficSplit:
        return await _timed(self.inner.observe(), self._report("observe"))

    async def shift(self, canary_percent: float) -> TrafficSplit:
        return await _timed(self.inner.shift(canary_percent), self._report("shift"))

    async def promote(self) -> TrafficSplit:
        return await _timed(self.inner.promote(), self._report("promote"))

    async def rollback(self) -> TrafficSplit:
        return await _timed(self.inner.rollback(), self._report("rollback"))


def observed_factory(
    factory: Callable[[Target, str | None], Strategy], observer: Observer
) -> Callable[[Target, str | None], Strategy]:
    def build(target: Target, stable: str | None) -> Strategy:
        return ObservedStrategy(factory(target, stable), observer)

    return build


class ObservedProvider:
    """A metric provider whose round trips are timed and reported under its name."""

    kind: ClassVar[str] = "observed"

    def __init__(self, name: str, inner: MetricProvider, observer: Observer) -> None:
        self.name = name
        self.inner = inner
        self.observer = observer

    async def query(
        self, queries: Sequence[MetricQuery], window: Window
    ) -> Sequence[Measurement | ProviderError]:
        def report(seconds: float, error: str | None) -> None:
            self.observer.provider_query(self.name, seconds, error)

        def partial(results: Sequence[Measurement | ProviderError]) -> str | None:
            failed = [r for r in results if isinstance(r, ProviderError)]
            return type(failed[0]).__name__ if failed else None

        return await _timed(self.inner.query(queries, window), report, error_of=partial)


def observed_providers(
    providers: Mapping[str, MetricProvider], observer: Observer
) -> dict[str, MetricProvider]:
    return {name: ObservedProvider(name, p, observer) for name, p in providers.items()}
