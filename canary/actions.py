"""Performing one action: the only code that calls strategies and metric providers.

``ActionRunner.perform(rollout, action)`` does what the machine asked (start, shift, check,
promote, roll back) through the strategies, each call under ``backend_timeout``, reads the
backends back, and returns the machine's ``Input``, with any error classified as data
(``ActionError``: temporary, timeout, conflict, permanent). It decides nothing: whether an
error is retried, rolled back or paused is the machine's call. It holds no task and no
lock, so a test drives it with a plain ``await``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import structlog

from analysis.base import MetricProvider, Verdict
from analysis.gates import EvaluationContext, TargetContext, evaluate
from analysis.hooks.kind import HookCall, HookCaller, HookError, HookTarget
from analysis.judges import GateResult, error_result
from canary.clock import Clock
from canary.events import ActionError, ErrorKind
from canary.machine import (
    Action,
    Check,
    CheckResult,
    HooksAnswered,
    Input,
    Promote,
    PromoteResult,
    Rollback,
    RollbackResult,
    RunHooks,
    Shift,
    ShiftResult,
    Start,
    Started,
)
from canary.model import Rollout
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
from strategies.retry import RetryPolicy, retry_transient

log = structlog.get_logger("canary.actions")
T = TypeVar("T")

StrategyFactory = Callable[[Target, str | None], Strategy]
Preflight = Callable[[Rollout], Awaitable[ActionError | None]]
"""Asked before a rollout's targets are touched: what stops it from starting, if anything
(the daemon checks that the providers its gates name answer)."""


class BackendTimeout(TemporaryError):
    """A strategy call that did not answer within ``backend_timeout``."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no answer within {seconds:g}s", delay=0.0)
        self.seconds = seconds


def classify(key: str, exc: StrategyError) -> ActionError:
    if isinstance(exc, BackendTimeout):
        return ActionError.timeout(key, exc.seconds)
    return ActionError.of(key, exc)


class ActionRunner:
    def __init__(
        self,
        factory: StrategyFactory,
        providers: Mapping[str, MetricProvider],
        clock: Clock,
        *,
        backend_timeout: float,
        provider_timeout: float,
        preflight: Preflight | None = None,
        hooks: Mapping[str, HookCaller] | None = None,
        unconfigured_hooks: Mapping[str, str] | None = None,
        hook_retry_wait: float = 1.0,
    ) -> None:
        self.hooks = dict(hooks or {})  # by hook kind: the callers this daemon built
        self.unconfigured_hooks = dict(unconfigured_hooks or {})
        self.hook_retry_wait = hook_retry_wait
        self.factory = factory
        self.preflight = preflight
        self.providers = providers
        self.clock = clock
        self.backend_timeout = backend_timeout
        self.provider_timeout = provider_timeout
        # Strategies of each rollout, built once per set of stable versions.
        self._built: dict[str, tuple[tuple[str | None, ...], list[Strategy]]] = {}

    def forget(self, rollout_id: str) -> None:
        """Drop what is kept for a rollout whose task has ended."""
        self._built.pop(rollout_id, None)

    def held(self) -> int:
        return len(self._built)

    async def perform(self, r: Rollout, action: Action) -> Input:
        match action:
            case Start():
                return await self._start(r)
            case Shift(weight=weight):
                return await self._shift(r, weight)
            case Check():
                return await self._check(r)
            case Promote():
                return await self._promote(r)
            case Rollback(targets=order):
                return await self._rollback(r, order)
            case RunHooks():
                return await self._hooks(r, action)
        raise AssertionError(f"not an action to perform: {action!r}")

    async def observe(self, r: Rollout) -> tuple[TrafficSplit | None, ...]:
        """What each target serves now (None: unreadable); for a restart's reconciliation."""
        if not r.started:
            return ()
        splits: list[TrafficSplit | None] = []
        for state, strategy in zip(r.targets, self._strategies(r), strict=True):
            try:
                splits.append(await self._call(strategy.observe()))
            except StrategyError as exc:
                log.warning("rollout.observe_failed", target=state.key, error=str(exc))
                splits.append(None)
        return tuple(splits)

    # ------------------------------------------------------------ calls

    def _strategies(self, r: Rollout) -> list[Strategy]:
        stables = tuple(t.stable for t in r.targets)
        cached = self._built.get(r.id)
        if cached is not None and cached[0] == stables:
            return cached[1]
        built = [
            self.factory(target, stable)
            for target, stable in zip(r.spec.targets, stables, strict=True)
        ]
        self._built[r.id] = (stables, built)
        return built

    async def _call(self, call: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(call, self.backend_timeout)
        except TimeoutError:
            raise BackendTimeout(self.backend_timeout) from None

    async def _write(
        self,
        strategy: Strategy,
        write: Callable[[], Awaitable[TrafficSplit]],
        ours: Sequence[float],
    ) -> TrafficSplit:
        """``write()``; after a conflict, look. Someone else's split is returned as it is (the
        machine pauses: drift); over our own (``ours``), the write is made once more, and a
        second conflict over our own split is raised (the machine retries it later)."""
        for last in (False, True):
            try:
                return await self._call(write())
            except ConflictError:
                seen = await self._call(strategy.observe())
                if not any(seen.matches(w) for w in ours):
                    return seen
                if last:
                    raise
        raise AssertionError("unreachable")

    # ------------------------------------------------------------ actions

    async def _start(self, r: Rollout) -> Started:
        if self.preflight is not None and (problem := await self.preflight(r)) is not None:
            return Started(error=problem)
        strategies: list[Strategy] = []
        for target, state in zip(r.spec.targets, r.targets, strict=True):
            try:
                strategies.append(self.factory(target, None))
            except StrategyError as exc:
                return Started(error=classify(state.key, exc))
        stables: list[str | None] = []
        for state, strategy in zip(r.targets, strategies, strict=True):
            try:
                await self._call(strategy.validate())
                split = await self._call(strategy.observe())
            except StrategyError as exc:
                return Started(error=classify(state.key, exc))
            if not split.matches(0):
                message = (
                    f"already serves {split.describe()}; a rollout starts from a target that "
                    "serves only its stable version"
                )
                return Started(error=ActionError(ErrorKind.PERMANENT, state.key, message))
            stables.append(split.stable)
        return Started(stables=tuple(stables))

    async def _shift(self, r: Rollout, weight: float) -> ShiftResult:
        splits: list[TrafficSplit] = []
        for state, strategy in zip(r.targets, self._strategies(r), strict=True):
            try:
                shift = functools.partial(strategy.shift, weight)
                split = await self._write(strategy, shift, (state.weight, weight))
            except StrategyError as exc:
                return ShiftResult(weight, tuple(splits), error=classify(state.key, exc))
            splits.append(split)
            if not split.matches(weight):
                break  # not what we wrote: the machine records drift
        return ShiftResult(weight, tuple(splits))

    async def _promote(self, r: Rollout) -> PromoteResult:
        splits: list[TrafficSplit] = []
        for state, strategy in zip(r.targets, self._strategies(r), strict=True):
            try:
                split = await self._write(strategy, strategy.promote, (state.weight, 100.0))
            except StrategyError as exc:
                return PromoteResult(tuple(splits), error=classify(state.key, exc))
            splits.append(split)
            if not split.matches(100):
                break
        return PromoteResult(tuple(splits))

    async def _rollback(self, r: Rollout, order: Sequence[int]) -> RollbackResult:
        restored: list[int] = []
        errors: dict[int, ActionError] = {}
        try:
            strategies = self._strategies(r)
        except StrategyError as exc:
            return RollbackResult(errors={i: classify(r.targets[i].key, exc) for i in order})
        for i in order:  # every target is tried, even after one refuses
            key = r.targets[i].key
            try:
                split = await self._call(strategies[i].rollback())
            except StrategyError as exc:
                errors[i] = classify(key, exc)
                continue
            if split.matches(0):
                restored.append(i)
            else:
                message = f"read back {split.describe()} after the rollback call"
                errors[i] = ActionError(ErrorKind.CONFLICT, key, message)
        return RollbackResult(tuple(restored), errors)

    async def _hooks(self, r: Rollout, action: RunHooks) -> HooksAnswered:
        """Every hook the action names, concurrently; each answer (or ERROR) in order."""
        by_name = {h.name: h for h in r.spec.hooks}
        now = self.clock.now()

        async def one(name: str) -> GateResult:
            hook = by_name[name]
            caller = self.hooks.get(hook.kind)
            if caller is None:
                why = self.unconfigured_hooks.get(hook.kind, "")
                return error_result(
                    name,
                    f"cannot be asked: this daemon has no {hook.kind} hooks configured"
                    + (f" ({why})" if why else ""),
                )
            call = hook_call(r, action.point, name, now)
            return await run_hook(hook, caller, call, self.hook_retry_wait)

        results = await asyncio.gather(*(one(name) for name in action.names))
        return HooksAnswered(action.point, r.step, tuple(results))

    async def _check(self, r: Rollout) -> CheckResult:
        splits: list[TrafficSplit | None] = []
        unreadable: list[GateResult] = []
        for state, strategy in zip(r.targets, self._strategies(r), strict=True):
            try:
                splits.append(await self._call(strategy.observe()))
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
                targets=targets(r),
            )
            results = await evaluate(gates, self.providers, ctx, self.provider_timeout)
        return CheckResult(tuple(splits), tuple(unreadable + results))


def targets(r: Rollout) -> list[TargetContext]:
    """Each target as the gates see it: what a gate's query template may name there, now."""
    return [TargetContext(state.key, variables(r, index)) for index, state in enumerate(r.targets)]


def variables(r: Rollout, index: int = 0) -> dict[str, str]:
    """What a gate's query template may name, for this rollout's ``index``-th target now."""
    target = r.spec.targets[index]
    return {
        **target_variables(target),
        "canary_version": target.canary_version,
        "stable_version": r.targets[index].stable or "",
        "rollout": r.name,
        "step": str(r.step + 1),
        "weight": f"{r.weight:g}",
    }


class _NoAnswer(TemporaryError):
    """A hook attempt without an answer: tried again while its retries last."""


class _Refused(PermanentError):
    """A hook that could not be asked (access denied, no such function): not tried again."""


async def run_hook(
    hook: Any, caller: HookCaller, call: HookCall, retry_wait: float = 1.0
) -> GateResult:
    """One hook's verdict: each attempt bounded by its ``timeout``, an attempt without an
    answer (timeout, 5xx, unreachable) tried again up to ``retries`` times (tenacity, in
    strategies/retry.py), the last one's ERROR kept. The answer's values are the detail."""
    attempts = 0
    detail: dict[str, Any] = {}

    async def attempt() -> Any:
        nonlocal attempts, detail
        attempts += 1
        try:
            return await asyncio.wait_for(caller.call(hook, call), hook.timeout)
        except TimeoutError:
            detail = {"timeout": hook.timeout}
            raise _NoAnswer(f"no answer within {hook.timeout:g}s (timeout)") from None
        except HookError as exc:
            detail = exc.detail
            raise (_NoAnswer if exc.retryable else _Refused)(str(exc)) from None

    policy = RetryPolicy(attempts=hook.retries + 1, initial=retry_wait, maximum=30.0)
    base = {"hook": hook.kind, "point": call.point}
    try:
        answer = await retry_transient(attempt, policy)
    except StrategyError as exc:
        tried = f" after {attempts} attempts" if attempts > 1 else ""
        return GateResult(
            gate=hook.name,
            verdict=Verdict.ERROR,
            explanation=f"{hook.name} {exc}{tried} → ERROR",
            detail=base | detail | {"attempts": attempts, "error": str(exc)},
        )
    except Exception as exc:  # a bug in a caller must not take the rollout's task down
        log.exception("hook.failed", hook=hook.name, kind=hook.kind)
        return error_result(hook.name, f"could not be asked: {exc!r}")
    return GateResult(
        gate=hook.name,
        verdict=answer.verdict,
        explanation=f"{hook.name} {answer.explanation} → {answer.verdict.value}",
        value=float(answer.detail["status"]) if "status" in answer.detail else None,
        detail=base | dict(answer.detail) | {"attempts": attempts},
    )


def hook_call(r: Rollout, point: str, hook: str, now: datetime) -> HookCall:
    """What a hook is told about ``r``: the webhook payload, a test function's event."""
    return HookCall(
        point=point,
        hook=hook,
        rollout_id=r.id,
        rollout=r.name,
        build=r.document.metadata.build,
        targets=[
            HookTarget(state.key, state.kind, target.canary_version, state.stable)
            for target, state in zip(r.spec.targets, r.targets, strict=True)
        ],
        step=r.step + 1,
        steps=len(r.spec.steps),
        weight=r.weight,
        at=now.isoformat(),
        timestamp=int(now.timestamp()),
        reason=r.reason if point == "on-rollback" else None,
        elapsed=(now - r.created_at).total_seconds(),
    )
