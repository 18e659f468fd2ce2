"""The store protocol: where rollouts survive the daemon.

A rollout is never lost: every state change is saved, together with the events that explain
it, in one transaction, before the engine moves on. Saves are compare-and-swap on
``Rollout.version`` so two writers can never silently overwrite each other. One live
rollout per target is enforced here, at the only place that sees every start.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from canary.model import Event, NewEvent, Phase, Rollout


class StoreError(Exception):
    """Base of the store's errors."""


class NotFound(StoreError):
    def __init__(self, rollout_id: str) -> None:
        super().__init__(f"no rollout {rollout_id!r}")
        self.rollout_id = rollout_id


class TargetBusy(StoreError):
    """A live rollout already holds one of the targets."""

    def __init__(self, target_key: str, rollout_id: str, rollout_name: str) -> None:
        super().__init__(
            f"target {target_key} is already being rolled out by live rollout {rollout_id} "
            f"({rollout_name}); wait for it to end, or abort it"
        )
        self.target_key = target_key
        self.rollout_id = rollout_id
        self.rollout_name = rollout_name


class DuplicateKey(StoreError):
    """Another rollout was created with the same idempotency key."""

    def __init__(self, key: str, rollout_id: str) -> None:
        super().__init__(f"idempotency key {key!r} already belongs to rollout {rollout_id}")
        self.key = key
        self.rollout_id = rollout_id


class StaleWrite(StoreError):
    """The rollout changed since it was read (its version moved on)."""

    def __init__(self, rollout_id: str, expected: int, found: int) -> None:
        super().__init__(
            f"rollout {rollout_id} is at version {found}, not {expected}; reload and retry"
        )


class Store(Protocol):
    async def create(
        self, rollout: Rollout, events: Sequence[NewEvent], at: datetime
    ) -> tuple[Rollout, list[Event]]:
        """Insert a new rollout (version 0 in, 1 out) and claim its targets.

        Raises ``TargetBusy`` if a live rollout holds any of ``rollout.targets`` (by key),
        ``DuplicateKey`` if ``rollout.idempotency_key`` is taken (checked first, so a retried
        create is recognised as one), ``StoreError`` if the id exists. Nothing is written then.
        The returned record has ``updated_at = at``; events are numbered from 1 as in ``save``.
        A rollout created in a terminal phase claims no targets. All datetimes must be
        timezone-aware; a ``rollout.version`` other than 0 is a ``ValueError``.
        """

    async def get(self, rollout_id: str) -> Rollout:
        """The rollout; raises ``NotFound``."""

    async def save(
        self, rollout: Rollout, events: Sequence[NewEvent], at: datetime
    ) -> tuple[Rollout, list[Event]]:
        """Replace the record if its stored version equals ``rollout.version``.

        Returns the record with ``version + 1`` and ``updated_at = at``, and the appended
        events with their sequence numbers (1, 2, ... per rollout, gapless). Each event's
        ``at`` is ``at``; its ``step`` and ``weight`` are the event's own when set, else
        ``rollout.step + 1`` and ``rollout.weight`` of the record being saved. A rollout
        whose phase becomes terminal releases its targets. Raises ``StaleWrite`` or
        ``NotFound``; nothing is written then.
        """

    async def list(
        self,
        *,
        phase: Phase | None = None,
        target: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> builtins.list[Rollout]:
        """Newest first; ``before`` is an id from a previous page; ``target`` a target key.

        Newest means latest ``created_at``, then greatest id. ``target`` matches rollouts
        that ever had that target, ended or not. An unknown ``before`` raises ``NotFound``;
        a ``limit`` of 0 or less gives an empty list.
        """

    async def live(self) -> builtins.list[Rollout]:
        """Every rollout that has not ended, oldest first."""

    async def find_by_key(self, idempotency_key: str) -> Rollout | None:
        """The rollout created with this idempotency key, if any."""

    async def events(
        self, rollout_id: str, after: int = 0, limit: int = 1000
    ) -> builtins.list[Event]:
        """At most ``limit`` events with ``seq > after``, in order. Raises ``NotFound``."""

    async def ping(self) -> None:
        """Raise if the store cannot be used right now (also: after ``close``)."""

    async def close(self) -> None:
        """Release connections and locks; later calls raise ``StoreError``. Idempotent."""
