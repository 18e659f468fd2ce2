"""Dry runs: the real engine, machine, judges and policy, on a virtual clock.

``canary simulate`` answers "what would this spec do?" before any traffic moves: targets are
in-memory, metrics come from a scenario, and time jumps from one deadline to the next, so a
30-minute plan takes milliseconds. ``drive`` is also what the tests use to run the engine
on virtual time.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from analysis.hooks.registry import BY_NAME as HOOK_KINDS
from analysis.hooks.scripted import ScriptedHooks
from analysis.scripted import ScriptedProvider
from canary.clock import VirtualClock
from canary.engine import Engine, EngineOptions
from canary.machine import Command, CommandName, CommandRejected
from canary.model import Event, Phase, Rollout
from canary.store.memory import MemoryStore
from config.scenario import Scenario
from config.spec import PROVIDERS, RolloutDocument
from strategies.memory import MemoryFleet

Job = Callable[[], Awaitable[None]]
Scheduled = tuple[datetime, Job]


async def drive(
    engine: Engine,
    clock: VirtualClock,
    *,
    until: datetime | None = None,
    stop: Callable[[], bool] | None = None,
    scheduled: list[Scheduled] | None = None,
) -> None:
    """Advance virtual time, deadline by deadline, while any rollout task has work.

    Returns when every task has ended, when the only thing left is waiting for a person,
    when the next deadline lies beyond ``until``, or as soon as ``stop()`` is true.
    ``scheduled`` actions (sorted by time) run at their time, between deadlines.
    """
    pending = sorted(scheduled or [], key=lambda item: item[0])
    while True:
        await engine.settle()
        if stop is not None and stop():
            return
        deadline = clock.next_deadline()
        if pending and (deadline is None or pending[0][0] <= deadline):
            when, action = pending.pop(0)
            if until is not None and when > until:
                return
            clock.advance_to(when)
            await action()
            continue
        if not engine.active() or deadline is None:
            return
        if until is not None and deadline > until:
            clock.advance_to(until)
            return
        clock.advance_to(deadline)


@dataclass
class SimulationResult:
    rollout: Rollout
    events: list[Event]
    virtual_seconds: float
    wall_seconds: float
    notes: list[str] = field(default_factory=list)


async def simulate(document: RolloutDocument, scenario: Scenario) -> SimulationResult:
    started = time.perf_counter()
    clock = VirtualClock()
    store = MemoryStore()
    fleet = MemoryFleet(stable=scenario.stable_version)
    provider = ScriptedProvider.from_scenario(scenario)
    engine = Engine(
        store,
        clock,
        fleet.factory,
        dict.fromkeys(PROVIDERS, provider),
        options=EngineOptions(step_retry=1.0, hook_retry_wait=0.0),
        hooks=dict.fromkeys(HOOK_KINDS, ScriptedHooks(scenario)),
    )
    await engine.start()
    begin = clock.now()
    rollout = await engine.submit(document, actor="simulate")
    rid = rollout.id

    notes: list[str] = []  # what the scenario did, for the timeline's footer

    def at(offset: float) -> datetime:
        return begin + timedelta(seconds=offset)

    def command(name: CommandName, actor: str, full: bool, reason: str | None) -> Job:
        async def run() -> None:
            try:
                await engine.command(rid, Command(name, actor, full=full, reason=reason))
            except CommandRejected as exc:
                notes.append(f"+{_clock(clock.now() - begin)} scenario command refused: {exc}")

        return run

    def drift(index: int, version: str, weight: float) -> Job:
        async def run() -> None:
            target = document.spec.targets[index]
            backend = fleet.backend(target.key())
            backend.set_by_hand(backend.primary, version, weight)
            notes.append(
                f"+{_clock(clock.now() - begin)} scenario: {target.key()} set by hand to "
                f"{weight:g}% on {version}"
            )

        return run

    scheduled: list[Scheduled] = [
        (at(c.at), command(c.command, c.actor, c.full, c.reason)) for c in scenario.commands
    ]
    scheduled += [
        (at(d.at), drift(d.target, d.version, d.weight))
        for d in scenario.drift
        if d.target < len(document.spec.targets)
    ]
    await drive(engine, clock, until=at(scenario.max_duration), scheduled=scheduled)
    await engine.stop()
    final = await store.get(rid)
    if final.phase in (Phase.AWAITING_APPROVAL, Phase.PAUSED):
        notes.append(
            f"the rollout is {final.phase.value} and waits for a person; add a promote, "
            "resume or abort under `commands:` in the scenario to go on"
        )
    return SimulationResult(
        rollout=final,
        events=await store.events(rid),
        virtual_seconds=(clock.now() - begin).total_seconds(),
        wall_seconds=time.perf_counter() - started,
        notes=notes,
    )


def _clock(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
