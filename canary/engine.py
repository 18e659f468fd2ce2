"""The engine: the only place where rollouts touch the world.

One asyncio task per live rollout loops: ask the machine what to do, store the intent,
perform it through the strategies (outside any lock, under a timeout), read the backend
back, and store what happened. Commands are applied to the stored record at once and wake
the task, so a promote or an abort is acted on without waiting for the next tick. A task
never dies silently: an unexpected error is logged and the step retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, TypeVar

import structlog

from analysis.base import MetricProvider
from analysis.gates import EvaluationContext, evaluate
from analysis.judges import GateResult, error_result
from canary.clock import Clock
from canary.machine import (
    Action,
    Check,
    CheckResult,
    Command,
    Done,
    Input,
    Promote,
    PromoteResult,
    Restarted,
    Rollback,
    RollbackResult,
    Shift,
    ShiftResult,
    Start,
    Started,
    Wait,
    apply,
    decide,
    intent,
    new_rollout,
)
from canary.model import Event, Rollout
from canary.observer import Observer, observed_factory, observed_providers, safely
from canary.store.base import NotFound, Store
from config.spec import RolloutDocument
from config.targets import Target
from config.templates import target_variables
from strategies.base import (
    ConflictError,
    PermanentError,
    Strategy,
    StrategyError,
    TemporaryError,
    TrafficSplit,
)

log = structlog.get_logger("canary.engine")
T = TypeVar("T")

StrategyFactory = Callable[[Target, str | None], Strategy]


class Notifier(Protocol):
    """Hears about every stored event; a failure here never holds a rollout back."""

    async def notify(self, rollout: Rollout, events: Sequence[Event]) -> None: ...


@dataclass(frozen=True)
class EngineOptions:
    backend_timeout: float = 60.0  # one strategy call, retries included
    provider_timeout: float = 20.0  # one provider round trip
    step_retry: float = 5.0  # first delay after an unexpected error; doubles to 60s
    stop_timeout: float = 30.0  # how long stop() lets an in-flight action finish
    queue_size: int = 1000  # events buffered for each notifier or subscriber


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
        preflight: Callable[[Rollout], Awaitable[str | None]] | None = None,
    ) -> None:
        self.preflight = preflight  # asked before a rollout's targets: why it cannot start
        self.store = store
        self.clock = clock
        self.options = options or EngineOptions()
        self.observer = observer
        if observer is not None:  # every backend call and provider query is timed
            strategies = observed_factory(strategies, observer)
            providers = observed_providers(providers, observer)
        self.providers = providers
        self._factory = strategies
        self._notifiers = list(notifiers)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._waiting: dict[str, Any] = {}  # rollout id -> deadline (None: until woken)
        self._built: dict[str, tuple[tuple[str | None, ...], list[Strategy]]] = {}
        self._subscribers: set[asyncio.Queue[tuple[Rollout, list[Event]]]] = set()
        self._notify_queue: asyncio.Queue[tuple[Rollout, list[Event]]] | None = None
        self._notify_task: asyncio.Task[None] | None = None
        self._stopping = False
        self.running = False

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load every live rollout, look at its targets, reconcile, and resume it."""
        self._stopping = False
        if self._notifiers:
            self._notify_queue = asyncio.Queue(self.options.queue_size)
            self._notify_task = asyncio.create_task(self._dispatch(), name="canary-notify")
        for r in await self.store.live():
            await self._reconcile(r)
            self._spawn(r.id)
        self.running = True
        log.info("engine.started", live=len(self._tasks))

    async def stop(self) -> None:
        """Let in-flight actions finish, then stop every task; rollouts stay resumable."""
        self._stopping = True
        for wake in self._wake.values():
            wake.set()
        tasks = [t for t in self._tasks.values() if not t.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.options.stop_timeout)
            for task in pending:
                log.warning("engine.stop_timeout", task=task.get_name())
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._notify_task is not None:
            assert self._notify_queue is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._notify_queue.join(), timeout=5)
            self._notify_task.cancel()
            await asyncio.gather(self._notify_task, return_exceptions=True)
            self._notify_task = None
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
        self._publish(rollout, events)
        self._spawn(rollout.id)
        return rollout

    async def command(self, rollout_id: str, command: Command) -> Rollout:
        """Apply a person's command now; raises CommandRejected or NotFound."""
        async with self._lock(rollout_id):
            r = await self.store.get(rollout_id)
            t = apply(r, command, self.clock.now())
            if t.changed:
                r, events = await self.store.save(t.rollout, t.events, self.clock.now())
                self._publish(r, events)
        if r.phase.live:
            if rollout_id in self._tasks and not self._tasks[rollout_id].done():
                self._wake[rollout_id].set()
            else:
                self._spawn(rollout_id)
        return r

    def subscribe(self) -> asyncio.Queue[tuple[Rollout, list[Event]]]:
        """A queue of (rollout, new events) for every save; drop it with unsubscribe()."""
        queue: asyncio.Queue[tuple[Rollout, list[Event]]] = asyncio.Queue(self.options.queue_size)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[tuple[Rollout, list[Event]]]) -> None:
        self._subscribers.discard(queue)

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

    # ------------------------------------------------------------ the rollout task

    def _lock(self, rid: str) -> asyncio.Lock:
        return self._locks.setdefault(rid, asyncio.Lock())

    def _spawn(self, rid: str) -> None:
        if self._stopping:  # stored; the next engine over this store runs it
            return
        self._wake.setdefault(rid, asyncio.Event()).clear()
        task = asyncio.create_task(self._run(rid), name=f"rollout-{rid}")
        self._tasks[rid] = task
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("rollout.task_died", task=task.get_name(), error=repr(exc))

    async def _run(self, rid: str) -> None:
        structlog.contextvars.bind_contextvars(rollout_id=rid)
        delay = self.options.step_retry
        while not self._stopping:
            action: Action | None
            try:
                action = await self._step(rid)
                delay = self.options.step_retry
            except NotFound:
                log.error("rollout.vanished", detail="the store no longer has this rollout")
                return
            except Exception as exc:
                log.exception("rollout.step_failed", retry_in=delay, error=str(exc))
                action = Wait(self.clock.now() + timedelta(seconds=delay))
                delay = min(delay * 2, 60.0)
            if isinstance(action, Done):
                log.info("rollout.task_finished")
                return
            if isinstance(action, Wait):
                await self._wait(rid, action)

    async def _wait(self, rid: str, action: Wait) -> None:
        wake = self._wake[rid]
        if wake.is_set() or self._stopping:
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

    async def _step(self, rid: str) -> Action | None:
        """One decision and, if it is an action, its performance. None: decide again."""
        async with self._lock(rid):
            self._wake[rid].clear()  # this step decides on the newest state: wake consumed
            r = await self.store.get(rid)
            now = self.clock.now()
            action = decide(r, now)
            if isinstance(action, Wait | Done):
                return action
            written = intent(r, action)
            if written is not None:  # write-ahead: the intent is stored before any call
                r, events = await self.store.save(r, [written], now)
                self._publish(r, events)
        structlog.contextvars.bind_contextvars(step=r.step + 1)
        result = await self._perform(r, action)
        if result is None:  # interrupted by a command: decide again on the new state
            return None
        async with self._lock(rid):
            r = await self.store.get(rid)
            t = apply(r, result, self.clock.now())
            if t.changed or t.events:
                r, events = await self.store.save(t.rollout, t.events, self.clock.now())
                self._publish(r, events)
        return None

    async def _perform(self, r: Rollout, action: Action) -> Input | None:
        match action:
            case Start():
                return await self._start(r)
            case Shift(weight=weight):
                return await self._shift(r, weight)
            case Check():
                return await self._interruptible(r.id, self._check(r))
            case Promote():
                return await self._promote(r)
            case Rollback(targets=order):
                return await self._rollback(r, order)
        raise AssertionError(f"not an action to perform: {action!r}")

    async def _interruptible(self, rid: str, work: Coroutine[Any, Any, T]) -> T | None:
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

    # ------------------------------------------------------------ actions

    def _strategies(self, r: Rollout) -> list[Strategy]:
        stables = tuple(t.stable for t in r.targets)
        cached = self._built.get(r.id)
        if cached is not None and cached[0] == stables:
            return cached[1]
        built = [
            self._factory(target, stable)
            for target, stable in zip(r.spec.targets, stables, strict=True)
        ]
        self._built[r.id] = (stables, built)
        return built

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(call, self.options.backend_timeout)
        except TimeoutError:
            raise TemporaryError(
                f"{what} did not answer within {self.options.backend_timeout:g}s"
            ) from None

    async def _start(self, r: Rollout) -> Started:
        if self.preflight is not None and (problem := await self.preflight(r)) is not None:
            return Started(error=problem)
        try:
            strategies = [self._factory(t, None) for t in r.spec.targets]
        except StrategyError as exc:
            return Started(error=str(exc))
        stables: list[str | None] = []
        for state, strategy in zip(r.targets, strategies, strict=True):
            try:
                await self._call(state.key, strategy.validate())
                split = await self._call(state.key, strategy.observe())
            except StrategyError as exc:
                return Started(error=f"{state.key}: {exc}")
            if not split.matches(0):
                return Started(
                    error=f"{state.key} already serves {split.describe()}; a rollout starts "
                    "from a target that serves only its stable version"
                )
            stables.append(split.stable)
        return Started(stables=tuple(stables))

    async def _shift(self, r: Rollout, weight: float) -> ShiftResult:
        splits: list[TrafficSplit] = []
        for state, strategy in zip(r.targets, self._strategies(r), strict=True):
            try:
                split = await self._shift_one(state.key, strategy, weight, state.weight)
            except StrategyError as exc:
                return ShiftResult(weight, tuple(splits), error=f"{state.key}: {exc}")
            splits.append(split)
            if not split.matches(weight):
                break  # not what we wrote: the machine records drift
        return ShiftResult(weight, tuple(splits))

    async def _shift_one(
        self, key: str, strategy: Strategy, weight: float, previous: float
    ) -> TrafficSplit:
        try:
            return await self._call(key, strategy.shift(weight))
        except ConflictError:
            seen = await self._call(key, strategy.observe())
            if seen.matches(previous) or seen.matches(weight):
                return await self._call(key, strategy.shift(weight))  # our own state: retry
            return seen  # someone else's split

    async def _check(self, r: Rollout) -> CheckResult:
        splits: list[TrafficSplit | None] = []
        unreadable: list[GateResult] = []
        for state, strategy in zip(r.targets, self._strategies(r), strict=True):
            try:
                splits.append(await self._call(state.key, strategy.observe()))
            except StrategyError as exc:
                splits.append(None)
                unreadable.append(error_result("traffic", f"could not read {state.key}: {exc}"))
        results: list[GateResult] = []
        gates = r.spec.analysis.gates
        if gates:
            now = self.clock.now()
            ctx = EvaluationContext(
                now=now,
                weight=r.weight,
                elapsed=(now - r.created_at).total_seconds(),
                variables=self._variables(r),
            )
            results = await evaluate(gates, self.providers, ctx, self.options.provider_timeout)
        return CheckResult(tuple(splits), tuple(unreadable + results))

    @staticmethod
    def _variables(r: Rollout) -> dict[str, str]:
        first = r.spec.targets[0]
        return {
            **target_variables(first),
            "canary_version": first.canary_version,
            "stable_version": r.targets[0].stable or "",
            "rollout": r.name,
            "step": str(r.step + 1),
            "weight": f"{r.weight:g}",
        }

    async def _promote(self, r: Rollout) -> PromoteResult:
        splits: list[TrafficSplit] = []
        for state, strategy in zip(r.targets, self._strategies(r), strict=True):
            try:
                try:
                    split = await self._call(state.key, strategy.promote())
                except ConflictError:
                    split = await self._call(state.key, strategy.observe())
            except PermanentError as exc:
                return PromoteResult(tuple(splits), error=f"{state.key}: {exc}", permanent=True)
            except StrategyError as exc:
                return PromoteResult(tuple(splits), error=f"{state.key}: {exc}")
            splits.append(split)
            if not split.matches(100):
                break
        return PromoteResult(tuple(splits))

    async def _rollback(self, r: Rollout, order: Sequence[int]) -> RollbackResult:
        restored: list[int] = []
        errors: dict[int, str] = {}
        try:
            strategies = self._strategies(r)
        except StrategyError as exc:
            return RollbackResult(errors={i: str(exc) for i in order})
        for i in order:  # every target is tried, even after one refuses
            key = r.targets[i].key
            try:
                split = await self._call(key, strategies[i].rollback())
            except StrategyError as exc:
                errors[i] = str(exc)
                continue
            if split.matches(0):
                restored.append(i)
            else:
                errors[i] = f"read back {split.describe()} after the rollback call"
        return RollbackResult(tuple(restored), errors)

    async def _reconcile(self, r: Rollout) -> None:
        splits: list[TrafficSplit | None] = []
        if r.started:
            try:
                strategies = self._strategies(r)
            except StrategyError as exc:
                log.error("rollout.reconcile_failed", rollout_id=r.id, error=str(exc))
                strategies = []
            for state, strategy in zip(r.targets, strategies, strict=False):
                try:
                    splits.append(await self._call(state.key, strategy.observe()))
                except StrategyError as exc:
                    log.warning("rollout.observe_failed", rollout_id=r.id, error=str(exc))
                    splits.append(None)
        async with self._lock(r.id):
            r = await self.store.get(r.id)
            t = apply(r, Restarted(tuple(splits)), self.clock.now())
            r, events = await self.store.save(t.rollout, t.events, self.clock.now())
            self._publish(r, events)

    # ------------------------------------------------------------ events out

    def _publish(self, r: Rollout, events: list[Event]) -> None:
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
        if self.observer is not None:
            safely(self.observer.saved, r, events)
        for queue in [*self._subscribers, *([self._notify_queue] if self._notify_queue else [])]:
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
                        if self.observer is not None:
                            safely(self.observer.notification_failed, type(notifier).__name__)
                        log.warning(
                            "notify.failed",
                            notifier=type(notifier).__name__,
                            rollout_id=r.id,
                            error=str(exc),
                        )
            finally:
                self._notify_queue.task_done()
