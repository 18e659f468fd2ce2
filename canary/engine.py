"""The engine: the only place where rollouts touch the world, in three pieces.

* ``ActionRunner`` (canary/actions.py) performs one action through the strategies and
  returns what happened, errors classified as data;
* ``Scheduler`` (canary/scheduler.py) runs one task per live rollout: wake-ups, locks,
  waits on the Clock, and quiescence for virtual time;
* ``EventBus`` (canary/bus.py) hands every stored batch of events to the log, the
  observer, subscribers and notifiers.

``Engine`` wires them to the store and the machine. One step of a rollout: under its lock,
load it, ask the machine what to do and store the intent (write-ahead); outside the lock,
perform the action; under the lock again, reload (a command may have landed), apply the
result and store it. Commands are applied to the stored record at once and wake the task,
so a promote or an abort is acted on without waiting for the next tick.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from analysis.base import MetricProvider
from canary.actions import ActionRunner, Preflight, StrategyFactory
from canary.bus import Batch, EventBus, Notifier
from canary.clock import Clock
from canary.machine import (
    Action,
    Check,
    Command,
    Done,
    Restarted,
    RetryPolicy,
    Wait,
    apply,
    decide,
    intent,
    new_rollout,
)
from canary.model import NewEvent, Rollout
from canary.observer import Observer, observed_factory, observed_providers
from canary.scheduler import Scheduler
from canary.store.base import LeaseLost, StaleWrite, Store
from config.spec import RolloutDocument
from strategies.base import StrategyError

__all__ = ["Engine", "EngineOptions", "Notifier", "Ownership", "Preflight", "StrategyFactory"]

log = structlog.get_logger("canary.engine")

STALE_RETRIES = 5  # a step's result applied again onto commands stored meanwhile


@dataclass(frozen=True)
class EngineOptions:
    backend_timeout: float = 60.0  # one strategy call, retries included
    provider_timeout: float = 20.0  # one provider round trip
    step_retry: float = 5.0  # first delay after an unexpected error; doubles to 60s
    stop_timeout: float = 30.0  # how long stop() lets an in-flight action finish
    queue_size: int = 1000  # events buffered for each notifier or subscriber
    action_retry_budget: float = 300.0  # how long a start, shift or promotion may keep failing


class Ownership(Protocol):
    """Which rollouts this engine drives when several replicas share a store
    (``canary.replica.Replica``); without one, it drives every live rollout."""

    def fence(self, rollout_id: str) -> int | None:
        """The fencing token of this replica's lease on the rollout, or None."""

    def lost(self, rollout_id: str) -> None:
        """The lease is gone (a fenced write was refused, or it lapsed)."""

    async def offer(self, rollout_id: str) -> None:
        """A rollout this replica created: take it (``Engine.take``) if it should drive it."""


class Engine:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        strategies: StrategyFactory,
        providers: Mapping[str, MetricProvider],
        *,
        notifiers: Sequence[Notifier] = (),
        options: EngineOptions | None = None,
        observer: Observer | None = None,
        preflight: Preflight | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.options = options = options or EngineOptions()
        self.observer = observer
        if observer is not None:  # every backend call and provider query is timed
            strategies = observed_factory(strategies, observer)
            providers = observed_providers(providers, observer)
        self.retry = RetryPolicy(budget=options.action_retry_budget)
        self.runner = ActionRunner(
            strategies,
            providers,
            clock,
            backend_timeout=options.backend_timeout,
            provider_timeout=options.provider_timeout,
            preflight=preflight,
        )
        self.scheduler = Scheduler(
            clock, self._step, step_retry=options.step_retry, on_end=self.runner.forget
        )
        self.bus = EventBus(notifiers, observer, options.queue_size)
        self.running = False
        self.ownership: Ownership | None = None  # set before start() for several replicas
        self._resume: set[str] = set()  # taken over from another replica: reconcile first

    @property
    def providers(self) -> Mapping[str, MetricProvider]:
        return self.runner.providers

    @providers.setter
    def providers(self, providers: Mapping[str, MetricProvider]) -> None:
        self.runner.providers = providers

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load every live rollout, look at its targets, reconcile, and resume it."""
        self.scheduler.start()
        self.bus.start()
        if self.ownership is not None:  # the replica takes its rollouts (Engine.take)
            self.running = True
            log.info("engine.started", live=None)
            return
        live = await self.store.live()
        for r in live:
            await self._reconcile(r)
            self.scheduler.spawn(r.id)
        self.running = True
        log.info("engine.started", live=len(live))

    async def stop(self) -> None:
        """Let in-flight actions finish, then stop every task; rollouts stay resumable."""
        await self.scheduler.stop(self.options.stop_timeout)
        await self.bus.stop()
        self.running = False
        log.info("engine.stopped")

    # ------------------------------------------------------------ requests

    async def submit(
        self,
        document: RolloutDocument,
        *,
        actor: str,
        idempotency_key: str | None = None,
    ) -> Rollout:
        """Store a new rollout (refused if a live one holds a target) and start it."""
        now = self.clock.now()
        rollout, created = new_rollout(document, actor, now, idempotency_key)
        rollout, events = await self.store.create(rollout, [created], now)
        self.bus.publish(rollout, events)
        if self.ownership is None:
            self.scheduler.spawn(rollout.id)
        else:
            await self.ownership.offer(rollout.id)
        return rollout

    async def command(self, rollout_id: str, command: Command) -> Rollout:
        """Apply a person's command now; raises CommandRejected or NotFound."""
        for attempt in range(1, STALE_RETRIES + 1):
            async with self.scheduler.lock(rollout_id):
                r = await self.store.get(rollout_id)
                t = apply(r, command, self.clock.now(), self.retry)
                if not t.changed:
                    break
                try:  # any replica may store a command (compare-and-swap on version)
                    r = await self._save(t.rollout, t.events, fenced=False)
                    break
                except StaleWrite:  # the replica driving it stored a step: apply onto it
                    if attempt == STALE_RETRIES:
                        raise
        if r.phase.live and (self.ownership is None or self.ownership.fence(rollout_id)):
            self.scheduler.wake(rollout_id)  # elsewhere the owner hears the store's NOTIFY
        return r

    def take(self, rollout_id: str, *, resume: bool) -> None:
        """Drive a rollout this replica now holds the lease of; ``resume``: another replica
        drove it before, so look at its targets first, as after a restart."""
        if resume:
            self._resume.add(rollout_id)
        if self.scheduler.running(rollout_id):
            self.scheduler.wake_running(rollout_id)
        else:
            self.scheduler.spawn(rollout_id)

    def subscribe(self) -> asyncio.Queue[Batch]:
        """A queue of (rollout, new events) for every save; drop it with unsubscribe()."""
        return self.bus.subscribe()

    def unsubscribe(self, queue: asyncio.Queue[Batch]) -> None:
        self.bus.unsubscribe(queue)

    # ------------------------------------------------------------ for virtual time and tests

    def quiescent(self) -> bool:
        return self.scheduler.quiescent()

    def active(self) -> bool:
        return self.scheduler.active()

    async def settle(self) -> None:
        await self.scheduler.settle()

    def held(self) -> dict[str, int]:
        """How many rollouts each per-rollout map holds: all 0 once every task has ended."""
        return self.scheduler.held() | {"strategies": self.runner.held()}

    # ------------------------------------------------------------ one step

    async def _step(self, rid: str) -> Action | None:
        """One decision and, if it is an action, its performance. None: decide again."""
        self._fence(rid)  # a replica whose lease is gone stops before it decides anything
        if rid in self._resume:
            await self._reconcile(await self.store.get(rid))
            self._resume.discard(rid)
        async with self.scheduler.lock(rid):
            self.scheduler.consume_wake(rid)
            r = await self.store.get(rid)
            action = decide(r, self.clock.now())
            if isinstance(action, Wait | Done):
                return action
            written = intent(r, action)
            if written is not None:  # write-ahead: the intent is stored before any call
                try:
                    r = await self._save(r, [written])
                except StaleWrite:  # another replica stored a command meanwhile
                    return None
        structlog.contextvars.bind_contextvars(step=r.step + 1)
        if isinstance(action, Check):  # read-only: abandoned when a command lands
            result = await self.scheduler.interruptible(rid, self.runner.perform(r, action))
            if result is None:
                return None
        else:
            result = await self.runner.perform(r, action)
        for attempt in range(1, STALE_RETRIES + 1):
            async with self.scheduler.lock(rid):
                r = await self.store.get(rid)
                t = apply(r, result, self.clock.now(), self.retry)
                if not (t.changed or t.events):
                    return None
                try:
                    await self._save(t.rollout, t.events)
                    return None
                except StaleWrite:  # a command stored by another replica: apply onto it
                    if attempt == STALE_RETRIES:
                        raise
        return None

    async def _reconcile(self, r: Rollout) -> None:
        try:
            splits = await self.runner.observe(r)
        except StrategyError as exc:
            log.error("rollout.reconcile_failed", rollout_id=r.id, error=str(exc))
            splits = ()
        async with self.scheduler.lock(r.id):
            r = await self.store.get(r.id)
            t = apply(r, Restarted(splits), self.clock.now(), self.retry)
            await self._save(t.rollout, t.events)

    async def _save(
        self, r: Rollout, events: Sequence[NewEvent], *, fenced: bool = True
    ) -> Rollout:
        """Store and publish. ``fenced``: a write of the rollout's driver, which carries the
        replica's fencing token when there are several (commands are not fenced)."""
        fence = self._fence(r.id) if fenced else None
        try:
            saved, stored = await self.store.save(r, list(events), self.clock.now(), fence=fence)
        except LeaseLost:
            if self.ownership is not None:
                self.ownership.lost(r.id)
            raise
        self.bus.publish(saved, stored)
        return saved

    def _fence(self, rid: str) -> int | None:
        """This replica's fencing token for ``rid`` (None with a single daemon); raises
        ``LeaseLost`` if it holds no live lease on it."""
        if self.ownership is None:
            return None
        fence = self.ownership.fence(rid)
        if fence is None:
            self.ownership.lost(rid)
            raise LeaseLost(rid, None, "this replica holds no live lease on it")
        return fence
