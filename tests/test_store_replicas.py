"""Two engines as two replicas in one process, over one real PostgreSQL database.

The subprocess tests (tests/aws/test_failover.py) show failover as an operator sees it;
these look closer and run in seconds: new rollouts shared out, a command stored by the
replica that does not drive the rollout while the owner's backend call is in flight (the
owner applies its result onto the command instead of failing its step), and events stored
by one replica reaching the other's subscribers. Both engines drive one in-memory fleet,
so either sees the traffic the other wrote.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
import structlog.testing
from helpers import document, lambda_target

from canary.clock import RealClock
from canary.engine import Engine, EngineOptions
from canary.machine import Command
from canary.model import Phase
from canary.replica import Replica
from canary.store.postgres import PostgresStore
from config.spec import RolloutDocument
from strategies.memory import MemoryFleet

TTL = 2.0
RENEW = 0.5


@dataclass
class Node:
    store: PostgresStore
    engine: Engine
    replica: Replica


@pytest.fixture
async def nodes(pg_url: str) -> AsyncIterator[tuple[Node, Node, MemoryFleet]]:
    fleet = MemoryFleet(stable="1")
    made = []
    for name in ("a", "b"):
        store = PostgresStore(pg_url, replica=name)
        engine = Engine(store, RealClock(), fleet.factory, {}, options=EngineOptions())
        replica = Replica(store, engine, ttl=TTL, renew=RENEW)
        engine.ownership = replica
        await engine.start()
        made.append(Node(store, engine, replica))
    for node in made:
        await node.replica.start()
    await asyncio.sleep(RENEW * 2)  # each has seen the other's heartbeat
    yield made[0], made[1], fleet
    for node in made:
        await node.engine.stop()
        await node.replica.stop()
        await node.store.close()


def doc(function: str, bake: str = "30s") -> RolloutDocument:
    return document(
        targets=[lambda_target(function)],
        steps=[{"weight": 10, "bake": bake}, {"weight": 100}],
        name=function,
    )


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10) -> None:
    """Return once ``check()`` holds, polled every 20 ms; TimeoutError after ``within``."""
    async with asyncio.timeout(within):
        while True:
            if await check():
                return
            await asyncio.sleep(0.02)


async def until_phase(store: PostgresStore, rid: str, phase: Phase) -> None:
    async def reached() -> bool:
        return (await store.get(rid)).phase == phase

    await eventually(reached)


async def test_new_rollouts_are_shared_out_between_replicas(
    nodes: tuple[Node, Node, MemoryFleet],
) -> None:
    a, b, _ = nodes
    ids = [(await a.engine.submit(doc(f"fn{n}"), actor="ci")).id for n in range(6)]

    async def all_held() -> bool:
        return len(a.replica.held()) + len(b.replica.held()) == 6

    await eventually(all_held)

    assert set(a.replica.held()) | set(b.replica.held()) == set(ids)
    assert not set(a.replica.held()) & set(b.replica.held()), "one driver per rollout"
    assert (len(a.replica.held()), len(b.replica.held())) == (3, 3)


async def test_a_command_stored_by_another_replica_lands_while_the_owner_shifts(
    nodes: tuple[Node, Node, MemoryFleet],
) -> None:
    a, b, fleet = nodes
    target = document(targets=[lambda_target("slow")]).spec.targets[0].key()
    fleet.backend(target).latency = 1.0  # every backend call takes a second
    rollout = await a.engine.submit(doc("slow"), actor="ci")
    rid = rollout.id

    async def held() -> bool:
        return rid in a.replica.held() or rid in b.replica.held()

    await eventually(held)
    owner, other = (a, b) if rid in a.replica.held() else (b, a)
    stream = other.engine.subscribe()
    try:

        async def shift_in_flight() -> bool:  # its intent is stored; the call takes 1 s
            return "traffic.shifting" in [e.kind for e in await owner.store.events(rid)]

        await eventually(shift_in_flight)

        with structlog.testing.capture_logs() as logged:
            sent = time.monotonic()
            await other.engine.command(rid, Command("abort", actor="al"))
            await until_phase(owner.store, rid, Phase.ROLLED_BACK)
            took = time.monotonic() - sent

        assert not [e for e in logged if e["event"] == "rollout.step_failed"], logged
        relayed: list[tuple[str, str]] = []
        async with asyncio.timeout(5):  # relayed as the other replica hears of it
            while (rid, "rollout.rolled_back") not in relayed:
                saved, events = await stream.get()
                relayed += [(saved.id, e.kind) for e in events]
    finally:
        other.engine.unsubscribe(stream)
    backend = fleet.backend(target)
    assert (backend.primary, backend.extra_weight) == ("1", 0.0), "stable restored"
    assert took < 1.0 + 1.0 + 1.5, f"in-flight shift, then the rollback: {took:.1f}s"
    kinds = [e.kind for e in await owner.store.events(rid)]
    assert kinds.index("traffic.shifting") < kinds.index("command.abort")
    assert kinds[-1] == "rollout.rolled_back"
    assert kinds.count("traffic.shifting") == 1, "the owner did not shift again"
