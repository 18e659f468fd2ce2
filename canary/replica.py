"""Several replicas on one PostgreSQL database: which replica drives which rollout.

Any replica answers the API; each live rollout is driven by exactly one, the holder of its
lease. The database decides who holds what (``PostgresStore.claim``, ``renew``,
``release``), on its own clock, so replicas' clocks need not agree:

* **Leases.** Every ``CANARY_LEASE_RENEW`` seconds a replica renews its leases for
  ``CANARY_LEASE_TTL`` seconds, records a heartbeat, and claims live rollouts that nobody
  holds or whose lease lapsed, up to its share (live rollouts / replicas alive, rounded
  up). New rollouts are thereby spread: the replica that stored one takes it only within
  its share, and the others hear of it at once (``NOTIFY``) and claim it. A replica that
  dies loses its leases after the TTL and the others take its rollouts over: they look at
  the targets first (``Restarted``, as a restarted daemon does) and drive them on. A
  replica that stops cleanly releases its leases, so nobody waits for them to lapse.
* **Fencing.** Each claim bumps the rollout's fencing token; every write the engine makes
  while driving a rollout carries the token, and the database refuses it (``LeaseLost``)
  once another replica holds a newer one or the lease lapsed. A replica that stalled past
  its lease (a long GC pause, SIGSTOP, a partition) therefore cannot record anything when
  it wakes, and since the engine stores its intent (write-ahead) before every backend
  call, it cannot start a new backend write either: the rollout's task ends there. The
  engine also checks the lease locally (monotonic time since the last renewal) before
  each step, so a replica whose renewals stall stops on its own. What remains, a write
  already on the wire when the stall began, meets the backend's own conditional write
  (Lambda's RevisionId, Kubernetes' resourceVersion) and is refused there.
* **Commands and events.** A command given to any replica is stored there (compare-and-swap
  on the record's version) and announced with ``NOTIFY``: the owner wakes the rollout's
  task at once, and every replica relays the stored events to its own event streams, so
  ``/events`` and the live list work from any replica. Notifiers (Slack) and metrics run
  only on the replica that wrote the events.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import structlog

from canary.engine import Engine
from canary.store.base import NotFound, StoreError
from canary.store.postgres import Notice, PostgresStore

log = structlog.get_logger("canary.replica")


@dataclass
class _Held:
    fence: int
    until: float  # monotonic: when the lease lapses as far as this replica knows


class Replica:
    """This process as one replica: its leases, its claims, and what it hears."""

    def __init__(self, store: PostgresStore, engine: Engine, *, ttl: float, renew: float) -> None:
        self.store = store
        self.engine = engine
        self.ttl = ttl
        self.renew = renew
        self.id = store.replica
        self.replicas = 1  # alive, this one included, as of the last heartbeat
        self._held: dict[str, _Held] = {}
        self._poke = asyncio.Event()  # a rollout was created somewhere: claim now
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------ what the engine asks

    def fence(self, rollout_id: str) -> int | None:
        """The fencing token of a lease this replica holds and has not seen lapse; else None."""
        held = self._held.get(rollout_id)
        if held is None or time.monotonic() >= held.until:
            return None
        return held.fence

    def lost(self, rollout_id: str) -> None:
        """A fenced write was refused or the lease lapsed: this replica no longer drives it."""
        if self._held.pop(rollout_id, None) is not None:
            log.warning("rollout.lease_lost", rollout_id=rollout_id, replica=self.id)

    async def offer(self, rollout_id: str) -> None:
        """A rollout this replica just created: drive it if that is within its share; the
        other replicas heard of it (``NOTIFY``) and claim it otherwise."""
        try:
            await self._claim(only=rollout_id)
        except StoreError as exc:  # it is stored: the next claim pass (anyone's) takes it
            log.warning("replica.claim_failed", rollout_id=rollout_id, error=str(exc))

    def held(self) -> dict[str, int]:
        """The leases held now: rollout id -> fencing token."""
        return {rid: h.fence for rid, h in self._held.items()}

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Say this replica is alive, take its share, then keep leases and listen."""
        self.replicas = await self.store.heartbeat(self.ttl)
        await self._claim()
        self._tasks = [
            asyncio.create_task(self._keep(), name="canary-leases"),
            asyncio.create_task(self._listen(), name="canary-notifications"),
        ]
        log.info("replica.started", replica=self.id, replicas=self.replicas, held=len(self._held))

    async def stop(self) -> None:
        """Stop renewing and release every lease (call after the engine stopped)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        held, self._held = self.held(), {}
        try:
            await self.store.release(held)
        except StoreError as exc:
            log.warning("replica.release_failed", error=str(exc), detail="they lapse instead")
        log.info("replica.stopped", replica=self.id, released=len(held))

    # ------------------------------------------------------------ leases

    async def _keep(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), timeout=self.renew)
            self._poke.clear()
            try:
                await self._tick()
            except StoreError as exc:
                log.warning("replica.renew_failed", error=str(exc), retry_in=self.renew)
            except Exception as exc:  # never let the leases' loop die: they would all lapse
                log.exception("replica.tick_failed", error=repr(exc), retry_in=self.renew)

    async def _tick(self) -> None:
        started = time.monotonic()
        renewed = await self.store.renew(self.ttl)
        for rid in [r for r, h in self._held.items() if renewed.get(r) != h.fence]:
            self.lost(rid)
            self.engine.scheduler.wake_running(rid)  # its task ends at its next step
        for rid, fence in renewed.items():
            adopted = rid not in self._held
            self._held[rid] = _Held(fence, started + self.ttl)
            if adopted:  # ours in the database but not here (a lease the engine gave up)
                self.engine.take(rid, resume=True)
        self.replicas = await self.store.heartbeat(self.ttl)
        await self._claim()

    async def _claim(self, only: str | None = None) -> None:
        started = time.monotonic()
        for claimed in await self.store.claim(self.ttl, self.replicas, only):
            rid = claimed.rollout_id
            self._held[rid] = _Held(claimed.fence, started + self.ttl)
            log.info(
                "rollout.lease_taken",
                rollout_id=rid,
                replica=self.id,
                fence=claimed.fence,
                taken_over=claimed.taken_over,
            )
            self.engine.take(rid, resume=claimed.taken_over)

    # ------------------------------------------------------------ notifications

    async def _listen(self) -> None:
        while True:
            try:
                async for notice in self.store.notifications():
                    await self._heard(notice)
            except StoreError as exc:
                log.warning("replica.listen_failed", error=str(exc), retry_in=1.0)
            except Exception as exc:  # a bug here must not deafen the replica for good
                log.exception("replica.listen_failed", error=repr(exc), retry_in=1.0)
            # Anything announced while not listening: every rollout decides again.
            for rid in self._held:
                self.engine.scheduler.wake_running(rid)
            await asyncio.sleep(1.0)

    async def _heard(self, notice: Notice) -> None:
        if notice.writer == self.id:
            return  # our own write: already published here
        rid = notice.rollout_id
        if notice.created:
            self._poke.set()
        if rid in self._held:
            self.engine.scheduler.wake_running(rid)  # a command from another replica
        if notice.last < notice.first or not self.engine.bus.subscribed:
            return
        try:
            events = await self.store.events(
                rid, after=notice.first - 1, limit=notice.last - notice.first + 1
            )
            rollout = await self.store.get(rid)
        except NotFound:
            return
        except StoreError as exc:
            log.warning("replica.relay_failed", rollout_id=rid, error=str(exc))
            return
        self.engine.bus.relay(rollout, events)
