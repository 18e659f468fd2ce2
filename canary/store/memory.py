"""An in-process store, for simulations and tests.

Simulations replay thousands of rollouts on a virtual clock, so this store keeps the frozen
``Rollout`` and ``Event`` objects themselves: nothing is serialised or copied. It follows the
same contract as the SQLite store (``tests/store_contract.py`` runs against both), so code
proven against it behaves the same against a file. Nothing survives the process.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Sequence
from datetime import datetime

from canary.model import Event, NewEvent, Phase, Rollout
from canary.store.base import DuplicateKey, NotFound, StaleWrite, StoreError, TargetBusy


class MemoryStore:
    """The ``Store`` protocol over dicts; open with ``MemoryStore()``."""

    def __init__(self) -> None:
        self._rollouts: dict[str, Rollout] = {}
        self._events: dict[str, builtins.list[Event]] = {}
        self._claims: dict[str, str] = {}  # target key -> id of the live rollout holding it
        self._keys: dict[str, str] = {}  # idempotency key -> rollout id
        # A write checks, then updates several dicts; the lock keeps that atomic should a
        # write ever await in between.
        self._lock = asyncio.Lock()
        self._closed = False

    async def create(
        self, rollout: Rollout, events: Sequence[NewEvent], at: datetime
    ) -> tuple[Rollout, builtins.list[Event]]:
        if rollout.version != 0:
            raise ValueError(f"a new rollout has version 0, not {rollout.version}")
        async with self._lock:
            self._check_open()
            if rollout.id in self._rollouts:
                raise StoreError(f"rollout {rollout.id} already exists")
            key = rollout.idempotency_key
            if key is not None and key in self._keys:
                raise DuplicateKey(key, self._keys[key])
            if rollout.phase.live:
                for target in rollout.targets:
                    holder = self._claims.get(target.key)
                    if holder is not None:
                        raise TargetBusy(target.key, holder, self._rollouts[holder].name)
            stored = rollout.model_copy(update={"version": 1, "updated_at": at})
            self._rollouts[stored.id] = stored
            self._events[stored.id] = []
            if key is not None:
                self._keys[key] = stored.id
            if stored.phase.live:
                for target in stored.targets:
                    self._claims[target.key] = stored.id
            return stored, self._append(stored, events, at)

    async def get(self, rollout_id: str) -> Rollout:
        self._check_open()
        try:
            return self._rollouts[rollout_id]
        except KeyError:
            raise NotFound(rollout_id) from None

    async def save(
        self, rollout: Rollout, events: Sequence[NewEvent], at: datetime
    ) -> tuple[Rollout, builtins.list[Event]]:
        async with self._lock:
            current = await self.get(rollout.id)
            if current.version != rollout.version:
                raise StaleWrite(rollout.id, rollout.version, current.version)
            stored = rollout.model_copy(update={"version": rollout.version + 1, "updated_at": at})
            self._rollouts[stored.id] = stored
            if stored.phase.terminal:
                for target in stored.targets:
                    if self._claims.get(target.key) == stored.id:
                        del self._claims[target.key]
            return stored, self._append(stored, events, at)

    async def list(
        self,
        *,
        phase: Phase | None = None,
        target: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> builtins.list[Rollout]:
        self._check_open()
        found = (
            r
            for r in self._rollouts.values()
            if (phase is None or r.phase == phase)
            and (target is None or any(t.key == target for t in r.targets))
        )
        if before is not None:
            cursor = await self.get(before)
            found = (r for r in found if (r.created_at, r.id) < (cursor.created_at, cursor.id))
        newest_first = sorted(found, key=lambda r: (r.created_at, r.id), reverse=True)
        return newest_first[: max(limit, 0)]

    async def live(self) -> builtins.list[Rollout]:
        self._check_open()
        return sorted(
            (r for r in self._rollouts.values() if r.phase.live), key=lambda r: (r.created_at, r.id)
        )

    async def find_by_key(self, idempotency_key: str) -> Rollout | None:
        self._check_open()
        rollout_id = self._keys.get(idempotency_key)
        return None if rollout_id is None else self._rollouts[rollout_id]

    async def events(
        self, rollout_id: str, after: int = 0, limit: int = 1000
    ) -> builtins.list[Event]:
        self._check_open()
        try:
            log = self._events[rollout_id]
        except KeyError:
            raise NotFound(rollout_id) from None
        # seq n sits at index n - 1: the log is gapless and append-only.
        start = max(after, 0)
        return log[start : start + max(limit, 0)]

    async def ping(self) -> None:
        self._check_open()

    async def close(self) -> None:
        self._closed = True

    def _append(
        self, rollout: Rollout, events: Sequence[NewEvent], at: datetime
    ) -> builtins.list[Event]:
        log = self._events[rollout.id]
        added = [
            Event(
                rollout_id=rollout.id,
                seq=len(log) + n,
                at=at,
                kind=e.kind,
                step=rollout.step + 1 if e.step is None else e.step,
                weight=rollout.weight if e.weight is None else e.weight,
                message=e.message,
                data=e.data,
                actor=e.actor,
            )
            for n, e in enumerate(events, start=1)
        ]
        log.extend(added)
        return added

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the memory store is closed")
