"""The engine's pieces on their own: the action runner without tasks, and a scheduler that
forgets every rollout once its task has ended, even after thousands of them."""

from __future__ import annotations

import asyncio

import pytest
from helpers import T0, at, document, lambda_target, rollout

from canary.actions import ActionRunner
from canary.clock import VirtualClock
from canary.engine import Engine, EngineOptions
from canary.events import ErrorKind
from canary.machine import (
    Command,
    CommandRejected,
    Promote,
    PromoteResult,
    Rollback,
    RollbackResult,
    Shift,
    ShiftResult,
    Start,
    Started,
)
from canary.model import Phase
from canary.simulate import drive
from canary.store import MemoryStore
from strategies.base import PermanentError, TemporaryError, TrafficSplit
from strategies.memory import MemoryFleet

DOC = document(targets=[lambda_target("a"), lambda_target("b")])


def runner(fleet: MemoryFleet, backend_timeout: float = 5.0) -> ActionRunner:
    return ActionRunner(
        fleet.factory, {}, VirtualClock(T0), backend_timeout=backend_timeout, provider_timeout=5
    )


# ---------------------------------------------------------------- the action runner


async def test_the_runner_performs_an_action_and_returns_the_machines_input() -> None:
    fleet = MemoryFleet(stable="1")
    run = runner(fleet)
    started = await run.perform(rollout(Phase.PENDING, DOC, started=False), Start())
    assert started == Started(stables=("1", "1"))
    shifted = await run.perform(rollout(Phase.SHIFTING, DOC), Shift(10))
    assert isinstance(shifted, ShiftResult)
    assert [s.canary_weight for s in shifted.splits] == [10, 10]
    promoted = await run.perform(rollout(Phase.PROMOTING, DOC), Promote())
    assert isinstance(promoted, PromoteResult)
    assert [s.canary_weight for s in promoted.splits] == [100, 100]


async def test_the_runner_classifies_errors_as_data() -> None:
    fleet = MemoryFleet(stable="1")
    a, b = (fleet.backend(t.key()) for t in DOC.spec.targets)
    b.fail("shift", TemporaryError("ThrottlingException", delay=7))
    result = await runner(fleet).perform(rollout(Phase.SHIFTING, DOC), Shift(10))
    assert isinstance(result, ShiftResult)
    assert result.splits == (TrafficSplit(10, stable="1", detail="1 + 2 at 10%"),)
    assert result.error is not None
    assert (result.error.kind, result.error.target, result.error.delay) == (
        ErrorKind.TEMPORARY,
        DOC.spec.targets[1].key(),
        7,
    )
    a.fail("rollback", PermanentError("AccessDenied"))
    undone = await runner(fleet).perform(rollout(Phase.ROLLING_BACK, DOC), Rollback((1, 0)))
    assert isinstance(undone, RollbackResult)
    assert undone.restored == (1,), "every target is tried, even after one refuses"
    assert undone.errors[0].kind == ErrorKind.PERMANENT


async def test_a_backend_that_does_not_answer_is_a_timeout() -> None:
    fleet = MemoryFleet(stable="1")
    fleet.backend(DOC.spec.targets[0].key()).latency = 0.2
    result = await runner(fleet, backend_timeout=0.01).perform(
        rollout(Phase.SHIFTING, DOC), Shift(10)
    )
    assert isinstance(result, ShiftResult)
    assert result.error is not None
    assert result.error.kind == ErrorKind.TIMEOUT
    assert result.error.retryable


# ---------------------------------------------------------------- nothing left behind


def empty(engine: Engine) -> dict[str, int]:
    held = engine.held()
    assert set(held) == {"tasks", "wake", "waiting", "locks", "strategies"}
    return {name: n for name, n in held.items() if n}


async def test_two_thousand_finished_rollouts_leave_nothing_behind() -> None:
    clock = VirtualClock(T0)
    store = MemoryStore()
    engine = Engine(store, clock, MemoryFleet(stable="1").factory, {})
    await engine.start()
    ids = []
    for i in range(2000):
        doc = document(targets=[lambda_target(f"fn-{i}")], steps=[{"weight": 100}])
        ids.append((await engine.submit(doc, actor="ci")).id)
    assert engine.held()["tasks"] == 2000
    await drive(engine, clock)
    await asyncio.sleep(0)
    assert empty(engine) == {}
    assert {(await store.get(i)).phase for i in ids} == {Phase.SUCCEEDED}
    await engine.stop()


async def test_a_live_rollout_is_held_until_it_ends_and_commands_still_work_after() -> None:
    clock = VirtualClock(T0)
    engine = Engine(
        MemoryStore(),
        clock,
        MemoryFleet(stable="1").factory,
        {},
        options=EngineOptions(step_retry=1.0),
    )
    await engine.start()
    doc = document(steps=[{"weight": 10, "bake": "1m", "approval": True}, {"weight": 100}])
    r = await engine.submit(doc, actor="ci")
    await drive(engine, clock)
    held = engine.held()
    assert (held["tasks"], held["wake"], held["waiting"], held["strategies"]) == (1, 1, 1, 1)
    assert held["locks"] == 0, "a lock lives only while someone holds or waits for it"
    await engine.command(r.id, Command("promote", "ana"))
    await drive(engine, clock)
    await asyncio.sleep(0)
    assert empty(engine) == {}
    with pytest.raises(CommandRejected):  # a command after the end still gets its answer
        await engine.command(r.id, Command("abort", "ana"))
    assert empty(engine) == {}
    await engine.stop()


async def test_a_command_landing_mid_bake_is_applied_and_the_task_ends_clean() -> None:
    """A command sent while the task runs takes the rollout's lock in turn; the rollout
    ends where the command says, with nothing left behind."""
    clock = VirtualClock(T0)
    store = MemoryStore()
    engine = Engine(store, clock, MemoryFleet(stable="1").factory, {})
    await engine.start()
    doc = document(steps=[{"weight": 10, "bake": "1m"}, {"weight": 100}])
    r = await engine.submit(doc, actor="ci")
    await drive(engine, clock, until=at(30))
    command = asyncio.create_task(engine.command(r.id, Command("abort", "ana")))
    await drive(engine, clock)
    await command
    await asyncio.sleep(0)
    assert (await store.get(r.id)).phase == Phase.ROLLED_BACK
    assert empty(engine) == {}
    await engine.stop()


async def test_stop_leaves_nothing_behind_and_a_new_start_resumes() -> None:
    clock = VirtualClock(T0)
    store = MemoryStore()
    fleet = MemoryFleet(stable="1")
    engine = Engine(store, clock, fleet.factory, {})
    await engine.start()
    r = await engine.submit(
        document(steps=[{"weight": 10, "bake": "1m"}, {"weight": 100}]), actor="ci"
    )
    await drive(engine, clock, until=at(30))
    await engine.stop()
    assert empty(engine) == {}
    await engine.start()
    await drive(engine, clock)
    await engine.stop()
    assert (await store.get(r.id)).phase == Phase.SUCCEEDED
    assert empty(engine) == {}
