"""An in-process store, for simulations and tests.

Simulations replay thousands of rollouts on a virtual clock, so this store keeps the frozen
``Rollout`` and ``Event`` objects themselves: nothing is serialised or copied. It follows the
same contract as the SQLite store (``tests/store_contract.py`` runs against both), so code
proven against it behaves the same against a file. Nothing survives the process.

A record here is valid by construction; ``replace_record`` swaps one for stored text, as a
hand edit of a file would, so the quarantine contract runs here too.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Iterable, Sequence
from datetime import datetime

from canary.model import Event, NewEvent, Phase, Rollout
from canary.store.base import (
    DuplicateKey,
    FrozenField,
    NotFound,
    Quarantined,
    StaleWrite,
    StoreError,
    TargetBusy,
    frozen_changes,
    read_record,
    resolved,
    runnable,
    runnable_only,
    stamped,
)


class MemoryStore:
    """The ``Store`` protocol over dicts; open with ``MemoryStore()``."""

    def __init__(self) -> None:
        self._rollouts: dict[str, Rollout | Quarantined] = {}
        self._events: dict[str, builtins.list[Event]] = {}
        self._claims: dict[str, str] = {}  # target key -> id of the live rollout holding it
        self._keys: dict[str, str] = {}  # idempotency key -> rollout id
        self._refs: dict[tuple[str, str], str] = {}  # (rollout id, notifier) -> message ref
        # A write checks, then updates several dicts; the lock keeps that atomic should a
        # write ever await in between.
        self._lock = asyncio.Lock()
        self._closed = False
        self._reported: set[str] = set()  # quarantined rollouts already logged by live()

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
        return runnable(self._find(rollout_id))

    async def save(
        self,
        rollout: Rollout,
        events: Sequence[NewEvent],
        at: datetime,
        *,
        fence: int | None = None,
    ) -> tuple[Rollout, builtins.list[Event]]:
        if fence is not None:
            raise ValueError("the memory store has no leases (one process): no fence")
        async with self._lock:
            current = await self.get(rollout.id)
            if current.version != rollout.version:
                raise StaleWrite(rollout.id, rollout.version, current.version)
            changed = frozen_changes(current, rollout)
            if changed:
                raise FrozenField(rollout.id, changed)
            stored = rollout.model_copy(update={"version": rollout.version + 1, "updated_at": at})
            self._rollouts[stored.id] = stored
            if stored.phase.terminal:
                self._release(stored.id, [t.key for t in stored.targets])
            return stored, self._append(stored, events, at)

    async def list(
        self,
        *,
        phase: Phase | None = None,
        target: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> builtins.list[Rollout | Quarantined]:
        self._check_open()
        found = (
            r
            for r in self._rollouts.values()
            if (phase is None or r.phase == phase) and (target is None or target in _target_keys(r))
        )
        if before is not None:
            cursor = self._find(before)
            found = (r for r in found if (r.created_at, r.id) < (cursor.created_at, cursor.id))
        newest_first = sorted(found, key=lambda r: (r.created_at, r.id), reverse=True)
        return newest_first[: max(limit, 0)]

    async def live(self) -> builtins.list[Rollout]:
        self._check_open()
        live = [r for r in self._rollouts.values() if _is_live(r)]
        return runnable_only(sorted(live, key=lambda r: (r.created_at, r.id)), self._reported)

    async def find_by_key(self, idempotency_key: str) -> Rollout | None:
        self._check_open()
        rollout_id = self._keys.get(idempotency_key)
        return None if rollout_id is None else runnable(self._rollouts[rollout_id])

    async def resolve(
        self,
        quarantined: Quarantined,
        phase: Phase,
        reason: str,
        events: Sequence[NewEvent],
        at: datetime,
    ) -> tuple[Quarantined, builtins.list[Event]]:
        async with self._lock:
            current = self._find(quarantined.id)
            if current.version != quarantined.version:
                raise StaleWrite(quarantined.id, quarantined.version, current.version)
            stored = resolved(quarantined, phase, reason, at)
            self._rollouts[stored.id] = stored
            if phase.terminal:
                self._release(stored.id, stored.targets)
            return stored, self._append(quarantined, events, at)

    def replace_record(self, rollout_id: str, text: str) -> Rollout | Quarantined:
        """Replace a rollout's record by stored JSON ``text`` and read it back as the
        SQLite store would read its row: a hand edit of the file, for tests."""
        current = self._find(rollout_id)
        found = read_record(
            text,
            id=current.id,
            name=current.name,
            phase=str(current.phase),
            live=current.phase.live if isinstance(current, Rollout) else current.live,
            version=current.version,
            created_at=current.created_at,
            updated_at=current.updated_at,
            targets=sorted(_target_keys(current)),
            idempotency_key=current.idempotency_key,
        )
        self._rollouts[rollout_id] = found
        return found

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

    async def message_ref(self, rollout_id: str, notifier: str) -> str | None:
        self._find(rollout_id)
        return self._refs.get((rollout_id, notifier))

    async def set_message_ref(self, rollout_id: str, notifier: str, ref: str) -> None:
        self._find(rollout_id)
        self._refs[(rollout_id, notifier)] = ref

    async def prune(self, before: datetime, limit: int = 500) -> int:
        async with self._lock:
            self._check_open()
            ended = sorted(
                (r for r in self._rollouts.values() if not _is_live(r) and r.updated_at < before),
                key=lambda r: r.updated_at,
            )[: max(limit, 0)]
            for r in ended:
                del self._rollouts[r.id]
                del self._events[r.id]
                self._release(r.id, _target_keys(r))
                if r.idempotency_key is not None:
                    self._keys.pop(r.idempotency_key, None)
                for ref in [k for k in self._refs if k[0] == r.id]:
                    del self._refs[ref]
            return len(ended)

    async def ping(self) -> None:
        self._check_open()

    async def close(self) -> None:
        self._closed = True

    def _find(self, rollout_id: str) -> Rollout | Quarantined:
        self._check_open()
        try:
            return self._rollouts[rollout_id]
        except KeyError:
            raise NotFound(rollout_id) from None

    def _release(self, rollout_id: str, keys: Iterable[str]) -> None:
        for key in keys:
            if self._claims.get(key) == rollout_id:
                del self._claims[key]

    def _append(
        self, rollout: Rollout | Quarantined, events: Sequence[NewEvent], at: datetime
    ) -> builtins.list[Event]:
        log = self._events[rollout.id]
        added = stamped(rollout, events, at, len(log) + 1)
        log.extend(added)
        return added

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the memory store is closed")


def _is_live(r: Rollout | Quarantined) -> bool:
    return r.live if isinstance(r, Quarantined) else r.phase.live


def _target_keys(r: Rollout | Quarantined) -> set[str]:
    return {t.key for t in r.targets} if isinstance(r, Rollout) else set(r.targets)
