"""The store protocol: where rollouts survive the daemon.

A rollout is never lost: every state change is saved, together with the events that explain
it, in one transaction, before the engine moves on. Saves are compare-and-swap on
``Rollout.version`` so two writers can never silently overwrite each other. One live
rollout per target is enforced here, at the only place that sees every start.

A stored record that no longer validates (an older canary's bug, a hand edit) must never
wedge the daemon: it is read as ``Quarantined``, listed with its error, never run (``live``
leaves it out), and keeps its target claims so nothing else moves its traffic until it is
aborted (``canary.quarantine``) or fixed by hand.
"""

from __future__ import annotations

import builtins
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import structlog
from pydantic import ValidationError

from canary.model import Event, NewEvent, Phase, Rollout
from config.errors import problems_from_validation


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


@dataclass(frozen=True)
class Quarantined:
    """A stored rollout whose record no longer validates: listed, never run, abortable.

    Everything but ``error`` and ``record`` comes from what the store keeps beside the
    record (its columns), so it is there even when the record is not readable at all.
    ``step`` (1-based) and ``weight`` are the record's own when it has them.
    """

    id: str
    name: str
    phase: str  # as stored; not necessarily a Phase any more
    live: bool
    version: int
    created_at: datetime
    updated_at: datetime
    error: str  # what is wrong with the record, in one line
    record: Any  # the record as stored: parsed JSON, or the text if it is not JSON
    targets: tuple[str, ...] = ()  # the keys of its targets
    idempotency_key: str | None = None
    step: int = 1
    weight: float = 0.0


class Unreadable(NotFound):
    """The rollout exists but its record no longer validates; ``quarantined`` says why.

    A ``NotFound`` for code that only handles rollouts it can run (the engine drops it);
    the API and the CLI show it with its error, and ``canary.quarantine`` can abort it.
    """

    def __init__(self, quarantined: Quarantined) -> None:
        StoreError.__init__(self, f"rollout {quarantined.id} is quarantined: {quarantined.error}")
        self.rollout_id = quarantined.id
        self.quarantined = quarantined


log = structlog.get_logger("canary.store")

MAX_ERROR = 500  # characters of a quarantined record's error kept in the message


def read_record(
    text: str | bytes,
    *,
    id: str,
    name: str,
    phase: str,
    live: bool,
    version: int,
    created_at: str | datetime,
    updated_at: str | datetime,
    targets: Sequence[str] = (),
    idempotency_key: str | None = None,
) -> Rollout | Quarantined:
    """The stored record as a ``Rollout``, or as ``Quarantined`` if it does not validate.

    The keyword arguments are what the store keeps beside the record; they make the
    quarantined form (and must agree with a valid record, which wins when it validates).
    """
    try:
        return Rollout.model_validate_json(text)
    except ValidationError as exc:
        problems = problems_from_validation(exc)
        error = "; ".join(str(p) for p in problems[:5])
        if len(problems) > 5:
            error += f"; and {len(problems) - 5} more"
    try:
        record: Any = json.loads(text)
    except ValueError:
        record = text if isinstance(text, str) else text.decode("utf-8", "replace")
    data = record if isinstance(record, dict) else {}
    step, weight = data.get("step"), data.get("weight")
    return Quarantined(
        id=id,
        name=name,
        phase=phase,
        live=live,
        version=version,
        created_at=_moment(created_at),
        updated_at=_moment(updated_at),
        error=_one_line(f"the stored record does not validate: {error}"),
        record=record,
        targets=tuple(targets),
        idempotency_key=idempotency_key,
        step=step + 1 if isinstance(step, int) and not isinstance(step, bool) and step >= 0 else 1,
        weight=float(weight)
        if isinstance(weight, int | float)
        and not isinstance(weight, bool)
        and math.isfinite(weight)
        else 0.0,
    )


def resolved(q: Quarantined, phase: Phase, reason: str, at: datetime) -> Quarantined:
    """``q`` as ``Store.resolve`` stores it: the phase, reason, version and update time
    changed, in the raw record too when it is a JSON object; the rest as it was stored.
    A rolled back rollout serves no canary traffic: its weight is 0."""
    changes: dict[str, Any] = {
        "phase": phase.value,
        "reason": reason,
        "version": q.version + 1,
        "updated_at": at.astimezone(UTC).isoformat(),
    }
    if phase == Phase.ROLLED_BACK:
        changes["weight"] = 0.0
    record = q.record | changes if isinstance(q.record, dict) else q.record
    return replace(
        q,
        phase=phase.value,
        live=phase.live,
        version=q.version + 1,
        updated_at=at,
        record=record,
        weight=0.0 if phase == Phase.ROLLED_BACK else q.weight,
    )


def runnable_only(
    found: Sequence[Rollout | Quarantined], reported: set[str]
) -> builtins.list[Rollout]:
    """The valid rollouts of ``found`` (what ``live`` returns); each quarantined one is
    logged as a warning the first time this store leaves it out (ids in ``reported``)."""
    for q in found:
        if isinstance(q, Quarantined) and q.id not in reported:
            reported.add(q.id)
            log.warning(
                "rollout.quarantined",
                rollout_id=q.id,
                rollout=q.name,
                phase=q.phase,
                error=q.error,
                detail="not run; its traffic is left as it is; abort it to roll it back",
            )
    return [r for r in found if isinstance(r, Rollout)]


def runnable(found: Rollout | Quarantined) -> Rollout:
    """``found`` if it is a valid rollout; raises ``Unreadable`` if it is quarantined."""
    if isinstance(found, Quarantined):
        raise Unreadable(found)
    return found


def _moment(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        return value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return datetime.fromtimestamp(0, UTC)  # a hand-edited column: sorts first
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"


def display_url(url: str) -> str:
    """``url`` with its password masked, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


class StaleWrite(StoreError):
    """The rollout changed since it was read (its version moved on)."""

    def __init__(self, rollout_id: str, expected: int, found: int) -> None:
        super().__init__(
            f"rollout {rollout_id} is at version {found}, not {expected}; reload and retry"
        )


class LeaseLost(StoreError):
    """A fenced write by a replica that no longer holds the rollout's lease (several
    replicas on PostgreSQL): another replica drives the rollout now, or the lease lapsed."""

    def __init__(self, rollout_id: str, fence: int | None, detail: str) -> None:
        token = f" (fencing token {fence})" if fence is not None else ""
        super().__init__(
            f"rollout {rollout_id}: this replica's lease{token} is gone: {detail}; the "
            "write was refused and the replica stops driving it"
        )
        self.rollout_id = rollout_id
        self.fence = fence


class FrozenField(StoreError):
    """A save that would change what a rollout was created with (a bug in the caller)."""

    def __init__(self, rollout_id: str, fields: Sequence[str]) -> None:
        super().__init__(
            f"rollout {rollout_id}: {', '.join(fields)} never change after create; the save "
            "was refused and nothing was written (start a new rollout to change them)"
        )
        self.rollout_id = rollout_id
        self.fields = tuple(fields)


# What a rollout keeps from its create for life: ``save`` refuses to change any of them.
FROZEN = ("document", "targets", "idempotency_key", "created_at", "created_by")


def frozen_changes(stored: Any, rollout: Rollout) -> builtins.list[str]:
    """The fields of ``FROZEN`` whose value in ``rollout`` differs from ``stored`` (the
    stored record, a ``Rollout`` or its parsed JSON). Targets are compared by key and kind:
    their weights and versions are the rollout's state and do change."""
    new = json.loads(rollout.model_dump_json(include=set(FROZEN)))
    old = (
        stored.model_dump(mode="json", include=set(FROZEN))
        if isinstance(stored, Rollout)
        else stored
    )
    if not isinstance(old, dict):
        return []  # an unreadable record: a save could not have read it (get refuses it)
    changed = []
    for name in FROZEN:
        before, after = old.get(name), new.get(name)
        if name == "targets":
            before = [(t.get("key"), t.get("kind")) for t in before or () if isinstance(t, dict)]
            after = [(t["key"], t["kind"]) for t in after]
        elif name == "created_at" and before is not None:
            before, after = _moment(before), _moment(after)
        if before != after:
            changed.append(name)
    return changed


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
        """The rollout; raises ``NotFound``, or ``Unreadable`` if its record is quarantined."""

    async def save(
        self,
        rollout: Rollout,
        events: Sequence[NewEvent],
        at: datetime,
        *,
        fence: int | None = None,
    ) -> tuple[Rollout, list[Event]]:
        """Replace the record if its stored version equals ``rollout.version``.

        Returns the record with ``version + 1`` and ``updated_at = at``, and the appended
        events with their sequence numbers (1, 2, ... per rollout, gapless). Each event's
        ``at`` is ``at``; its ``step`` and ``weight`` are the event's own when set, else
        ``rollout.step + 1`` and ``rollout.weight`` of the record being saved. A rollout
        whose phase becomes terminal releases its targets. Raises ``StaleWrite`` or
        ``NotFound``, and ``FrozenField`` if the save would change a field of ``FROZEN``
        (document, target keys, idempotency key, creation); nothing is written then. A
        cancelled save commits all of it or nothing.

        ``fence`` is a replica's fencing token (``PostgresStore`` only): the write is made
        only while the store's lease on the rollout still carries that token and has not
        lapsed, else ``LeaseLost``. A store without leases refuses a fence (``ValueError``).
        """

    async def list(
        self,
        *,
        phase: Phase | None = None,
        target: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> builtins.list[Rollout | Quarantined]:
        """Newest first; ``before`` is an id from a previous page; ``target`` a target key.

        Newest means latest ``created_at``, then greatest id. ``target`` matches rollouts
        that ever had that target, ended or not. An unknown ``before`` raises ``NotFound``;
        a ``limit`` of 0 or less gives an empty list. Quarantined records are listed too
        (as ``Quarantined``), filtered by their stored phase and targets like the others.
        """

    async def live(self) -> builtins.list[Rollout]:
        """Every rollout that has not ended, oldest first; quarantined ones are left out."""

    async def find_by_key(self, idempotency_key: str) -> Rollout | None:
        """The rollout created with this idempotency key, if any; ``Unreadable`` if the
        rollout holding the key is quarantined."""

    async def resolve(
        self,
        quarantined: Quarantined,
        phase: Phase,
        reason: str,
        events: Sequence[NewEvent],
        at: datetime,
    ) -> tuple[Quarantined, builtins.list[Event]]:
        """Record what was done to a quarantined rollout (an abort): its new phase and reason
        (weight 0 once rolled back), and ``events`` (step and weight default to those of
        ``quarantined``, as it was before).

        Compare-and-swap on ``quarantined.version`` like ``save`` (``StaleWrite``, or
        ``NotFound``); a terminal ``phase`` releases its targets. The record stays as it is
        stored (still quarantined) except for its phase, reason, version and update time.
        Returns it as now stored, and the appended events.
        """

    async def events(
        self, rollout_id: str, after: int = 0, limit: int = 1000
    ) -> builtins.list[Event]:
        """At most ``limit`` events with ``seq > after``, in order. Raises ``NotFound``."""

    async def message_ref(self, rollout_id: str, notifier: str) -> str | None:
        """What ``notifier`` keeps to find its message about the rollout again (for Slack,
        the channel and ts of the rollout's message), or None. Raises ``NotFound``."""

    async def set_message_ref(self, rollout_id: str, notifier: str, ref: str) -> None:
        """Keep ``ref`` for ``notifier`` (replacing an earlier one); it survives restarts.
        Raises ``NotFound`` if there is no such rollout (quarantined ones have refs too)."""

    async def prune(self, before: datetime, limit: int = 500) -> int:
        """Delete up to ``limit`` ended rollouts last updated before ``before``, with their
        events, targets and message refs (the retention of ``CANARY_RETENTION_DAYS``).
        Live rollouts are never pruned. Returns how many rollouts were deleted."""

    async def ping(self) -> None:
        """Raise if the store cannot be used right now (also: after ``close``)."""

    async def close(self) -> None:
        """Release connections and locks; later calls raise ``StoreError``. Idempotent."""


def stamped(
    rollout: Rollout | Quarantined, events: Sequence[NewEvent], at: datetime, first: int
) -> builtins.list[Event]:
    """``events`` as stored: numbered from ``first``, at ``at``, with the rollout's step (1-based)
    and weight where an event names none. One rule for every store."""
    step = rollout.step + 1 if isinstance(rollout, Rollout) else rollout.step
    return [
        Event(
            rollout_id=rollout.id,
            seq=seq,
            at=at,
            kind=e.kind,
            step=step if e.step is None else e.step,
            weight=rollout.weight if e.weight is None else e.weight,
            message=e.message,
            data=e.data,
            actor=e.actor,
        )
        for seq, e in enumerate(events, start=first)
    ]
