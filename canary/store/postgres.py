"""The PostgreSQL store: several replicas of the daemon over one database.

The database platform teams already run, with its backups and failover, instead of a file
on one host. It keeps the same contract as SQLite (``tests/store_contract.py`` runs on both,
against real servers) and adds what several replicas need:

* **Leases with fencing tokens.** Each live rollout row carries ``owner`` (a replica's id),
  ``fence`` (bumped on every change of owner) and ``lease_until`` (the database's clock,
  so replicas' clocks never have to agree). ``claim`` takes unowned or lapsed rollouts,
  ``renew`` extends the caller's, ``release`` gives them up. A save made with ``fence=``
  is checked in the same statement that locks the row: a replica that stalled past its
  lease (a GC pause, SIGSTOP, a partition) gets ``LeaseLost`` and writes nothing.
* **Notifications.** Every write sends ``NOTIFY canary`` inside its transaction (so only
  once it commits) naming the rollout, the events' sequence numbers and the writing
  replica: the owner wakes up for a command given to another replica, and every replica
  relays the events to its own event streams. ``notifications()`` listens on a connection
  of its own.

How it is built: psycopg 3 with a connection pool (``psycopg_pool``); every call is one
transaction, so a cancelled call commits all of it or nothing (PostgreSQL rolls back a
transaction whose connection is closed or whose query is cancelled before COMMIT). The
record is kept as JSON text beside the columns queried on, as in SQLite, so a record that
no longer validates is read as ``Quarantined`` with its text intact. Events are
append-only: a trigger refuses UPDATE, and DELETE unless the transaction prunes (retention).
``create`` takes a transaction-scoped advisory lock, so two replicas starting rollouts on
one target at once have one winner and the loser is told who holds it. The schema is a
numbered list of migrations (table ``canary_schema``), applied under an advisory lock so
replicas starting together migrate once; a database of a newer canary is refused.

``PostgresStore(url)`` does no I/O; the first call opens the pool and migrates.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from canary.model import Event, NewEvent, Phase, Rollout
from canary.store.base import (
    DuplicateKey,
    FrozenField,
    LeaseLost,
    NotFound,
    Quarantined,
    StaleWrite,
    StoreError,
    TargetBusy,
    display_url,
    frozen_changes,
    read_record,
    resolved,
    runnable,
    runnable_only,
    stamped,
)

_T = TypeVar("_T")
Conn = psycopg.AsyncConnection[TupleRow]

CHANNEL = "canary"
LISTEN_CHECK = 5.0  # seconds of silence after which the listening connection is checked
# A peer that vanished (a partition, a host gone) is noticed within seconds, not TCP's minutes.
_KEEPALIVE: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}
_CREATE_LOCK = 0x63616E617279  # "canary": serialises creates (claims, idempotency keys)
_MIGRATE_LOCK = _CREATE_LOCK + 1

# Append only: a released canary may have written any of these, so never edit one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE rollouts (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        phase TEXT NOT NULL,
        live BOOLEAN NOT NULL,
        version INTEGER NOT NULL,
        idempotency_key TEXT UNIQUE,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        record TEXT NOT NULL,
        owner TEXT,
        fence BIGINT NOT NULL DEFAULT 0,
        lease_until TIMESTAMPTZ
    );
    CREATE INDEX rollouts_by_age ON rollouts (created_at, id);
    CREATE INDEX rollouts_live_by_age ON rollouts (created_at, id) WHERE live;
    CREATE INDEX rollouts_ended ON rollouts (updated_at) WHERE NOT live;

    CREATE TABLE target_claims (
        target_key TEXT PRIMARY KEY,
        rollout_id TEXT NOT NULL REFERENCES rollouts (id)
    );
    CREATE TABLE rollout_targets (
        target_key TEXT NOT NULL,
        rollout_id TEXT NOT NULL REFERENCES rollouts (id),
        PRIMARY KEY (target_key, rollout_id)
    );
    CREATE INDEX rollout_targets_by_rollout ON rollout_targets (rollout_id);

    CREATE TABLE events (
        rollout_id TEXT NOT NULL REFERENCES rollouts (id),
        seq INTEGER NOT NULL CHECK (seq >= 1),
        at TIMESTAMPTZ NOT NULL,
        kind TEXT NOT NULL,
        step INTEGER NOT NULL,
        weight DOUBLE PRECISION NOT NULL,
        actor TEXT,
        message TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (rollout_id, seq)
    );
    CREATE FUNCTION canary_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' AND current_setting('canary.pruning', true) = 'on' THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'events are append-only';
    END $$;
    CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
        FOR EACH ROW EXECUTE FUNCTION canary_events_append_only();

    CREATE TABLE message_refs (
        rollout_id TEXT NOT NULL REFERENCES rollouts (id),
        notifier TEXT NOT NULL,
        ref TEXT NOT NULL,
        PRIMARY KEY (rollout_id, notifier)
    );

    -- The replicas alive: each one's last heartbeat, to share new rollouts out.
    CREATE TABLE replicas (
        id TEXT PRIMARY KEY,
        seen_at TIMESTAMPTZ NOT NULL
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class Claimed:
    """A lease this replica holds: the rollout, its fencing token, and whether another
    replica drove it before (then its targets must be looked at before it runs on)."""

    rollout_id: str
    fence: int
    taken_over: bool


@dataclass(frozen=True)
class Notice:
    """One committed write, as announced on the channel."""

    rollout_id: str
    first: int  # first and last event seq written; first > last when none
    last: int
    writer: str  # the writing store's replica id
    created: bool


class PostgresStore:
    """The ``Store`` protocol over PostgreSQL, with leases; see the module docstring."""

    def __init__(self, url: str, *, pool_size: int = 10, replica: str | None = None) -> None:
        self._url = url
        self.replica = replica or uuid.uuid4().hex[:16]  # this process's id as a writer
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._pool_size = pool_size
        self._opening: asyncio.Lock | None = None
        self._closed = False
        self._reported: set[str] = set()

    @property
    def url(self) -> str:
        return display_url(self._url)

    # ------------------------------------------------------------ the Store protocol

    async def create(
        self, rollout: Rollout, events: Sequence[NewEvent], at: datetime
    ) -> tuple[Rollout, builtins.list[Event]]:
        if rollout.version != 0:
            raise ValueError(f"a new rollout has version 0, not {rollout.version}")
        _aware(at)
        stored = rollout.model_copy(update={"version": 1, "updated_at": at})

        async def job(db: Conn) -> tuple[Rollout, builtins.list[Event]]:
            await db.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATE_LOCK,))
            if await _one(db, "SELECT 1 FROM rollouts WHERE id = %s", (stored.id,)):
                raise StoreError(f"rollout {stored.id} already exists")
            key = stored.idempotency_key
            if key is not None:
                owner = await _one(db, "SELECT id FROM rollouts WHERE idempotency_key = %s", (key,))
                if owner is not None:
                    raise DuplicateKey(key, owner[0])
            keys = [t.key for t in stored.targets]
            if stored.phase.live:
                for target_key in keys:
                    holder = await _one(
                        db,
                        "SELECT c.rollout_id, r.name FROM target_claims c"
                        " JOIN rollouts r ON r.id = c.rollout_id WHERE c.target_key = %s",
                        (target_key,),
                    )
                    if holder is not None:
                        raise TargetBusy(target_key, holder[0], holder[1])
            await db.execute(
                "INSERT INTO rollouts (id, name, phase, live, version, idempotency_key,"
                " created_at, updated_at, record) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    stored.id,
                    stored.name,
                    stored.phase.value,
                    stored.phase.live,
                    stored.version,
                    key,
                    stored.created_at,
                    at,
                    stored.model_dump_json(),
                ),
            )
            async with db.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO rollout_targets (target_key, rollout_id) VALUES (%s, %s)"
                    " ON CONFLICT DO NOTHING",
                    [(k, stored.id) for k in keys],
                )
                if stored.phase.live:
                    await cur.executemany(
                        "INSERT INTO target_claims (target_key, rollout_id) VALUES (%s, %s)",
                        [(k, stored.id) for k in keys],
                    )
            added = await self._append(db, stored, events, at, first=1, created=True)
            return stored, added

        return await self._tx(job)

    async def get(self, rollout_id: str) -> Rollout:
        async def job(db: Conn) -> Rollout:
            row = await _one(db, f"{_RECORD} WHERE id = %s", (rollout_id,))
            if row is None:
                raise NotFound(rollout_id)
            return runnable(await _read(db, row))

        return await self._tx(job)

    async def save(
        self,
        rollout: Rollout,
        events: Sequence[NewEvent],
        at: datetime,
        *,
        fence: int | None = None,
    ) -> tuple[Rollout, builtins.list[Event]]:
        _aware(at)
        stored = rollout.model_copy(update={"version": rollout.version + 1, "updated_at": at})

        async def job(db: Conn) -> tuple[Rollout, builtins.list[Event]]:
            row = await _one(
                db,
                "SELECT version, record, fence, lease_until > clock_timestamp() FROM rollouts"
                " WHERE id = %s FOR UPDATE",
                (stored.id,),
            )
            if row is None:
                raise NotFound(stored.id)
            version, record, held, fresh = row
            if fence is not None and (held != fence or not fresh):
                why = "another replica took it over" if held != fence else "it lapsed"
                raise LeaseLost(stored.id, fence, why)
            if version != rollout.version:
                raise StaleWrite(stored.id, rollout.version, version)
            changed = frozen_changes(_json(record), rollout)
            if changed:
                raise FrozenField(stored.id, changed)
            ended = stored.phase.terminal
            await db.execute(
                "UPDATE rollouts SET name = %s, phase = %s, live = %s, version = %s,"
                " updated_at = %s, record = %s,"
                " owner = CASE WHEN %s THEN NULL ELSE owner END,"
                " lease_until = CASE WHEN %s THEN NULL ELSE lease_until END"
                " WHERE id = %s",
                (
                    stored.name,
                    stored.phase.value,
                    stored.phase.live,
                    stored.version,
                    at,
                    stored.model_dump_json(),
                    ended,
                    ended,
                    stored.id,
                ),
            )
            if ended:
                await db.execute("DELETE FROM target_claims WHERE rollout_id = %s", (stored.id,))
            last = await _one(
                db, "SELECT COALESCE(MAX(seq), 0) FROM events WHERE rollout_id = %s", (stored.id,)
            )
            assert last is not None
            added = await self._append(db, stored, events, at, first=last[0] + 1)
            return stored, added

        return await self._tx(job)

    async def list(
        self,
        *,
        phase: Phase | None = None,
        target: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> builtins.list[Rollout | Quarantined]:
        async def job(db: Conn) -> builtins.list[Rollout | Quarantined]:
            where: builtins.list[str] = []
            params: builtins.list[Any] = []
            if phase is not None:
                where.append("phase = %s")
                params.append(phase.value)
            if target is not None:
                where.append("id IN (SELECT rollout_id FROM rollout_targets WHERE target_key = %s)")
                params.append(target)
            if before is not None:
                row = await _one(db, "SELECT created_at, id FROM rollouts WHERE id = %s", (before,))
                if row is None:
                    raise NotFound(before)
                where.append("(created_at, id) < (%s, %s)")
                params.extend(row)
            sql = _RECORD
            if where:
                sql += " WHERE " + " AND ".join(where)
            sql += " ORDER BY created_at DESC, id DESC LIMIT %s"
            params.append(max(limit, 0))
            rows = await (await db.execute(sql, params)).fetchall()
            return [await _read(db, row) for row in rows]

        return await self._tx(job)

    async def live(self) -> builtins.list[Rollout]:
        async def job(db: Conn) -> builtins.list[Rollout | Quarantined]:
            rows = await (
                await db.execute(f"{_RECORD} WHERE live ORDER BY created_at, id")
            ).fetchall()
            return [await _read(db, row) for row in rows]

        return runnable_only(await self._tx(job), self._reported)

    async def find_by_key(self, idempotency_key: str) -> Rollout | None:
        async def job(db: Conn) -> Rollout | None:
            row = await _one(db, f"{_RECORD} WHERE idempotency_key = %s", (idempotency_key,))
            return None if row is None else runnable(await _read(db, row))

        return await self._tx(job)

    async def resolve(
        self,
        quarantined: Quarantined,
        phase: Phase,
        reason: str,
        events: Sequence[NewEvent],
        at: datetime,
    ) -> tuple[Quarantined, builtins.list[Event]]:
        _aware(at)
        stored = resolved(quarantined, phase, reason, at)
        text = stored.record if isinstance(stored.record, str) else json.dumps(stored.record)

        async def job(db: Conn) -> tuple[Quarantined, builtins.list[Event]]:
            row = await _one(
                db, "SELECT version FROM rollouts WHERE id = %s FOR UPDATE", (quarantined.id,)
            )
            if row is None:
                raise NotFound(quarantined.id)
            if row[0] != quarantined.version:
                raise StaleWrite(quarantined.id, quarantined.version, row[0])
            await db.execute(
                "UPDATE rollouts SET phase = %s, live = %s, version = %s, updated_at = %s,"
                " record = %s WHERE id = %s",
                (phase.value, phase.live, stored.version, at, text, quarantined.id),
            )
            if phase.terminal:
                await db.execute(
                    "UPDATE rollouts SET owner = NULL, lease_until = NULL WHERE id = %s",
                    (quarantined.id,),
                )
                await db.execute(
                    "DELETE FROM target_claims WHERE rollout_id = %s", (quarantined.id,)
                )
            last = await _one(
                db,
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE rollout_id = %s",
                (quarantined.id,),
            )
            assert last is not None
            added = await self._append(db, quarantined, events, at, first=last[0] + 1)
            return stored, added

        return await self._tx(job)

    async def events(
        self, rollout_id: str, after: int = 0, limit: int = 1000
    ) -> builtins.list[Event]:
        async def job(db: Conn) -> builtins.list[Event]:
            if not await _one(db, "SELECT 1 FROM rollouts WHERE id = %s", (rollout_id,)):
                raise NotFound(rollout_id)
            rows = await (
                await db.execute(
                    "SELECT seq, at, kind, step, weight, actor, message, data FROM events"
                    " WHERE rollout_id = %s AND seq > %s ORDER BY seq LIMIT %s",
                    (rollout_id, after, max(limit, 0)),
                )
            ).fetchall()
            return [
                Event(
                    rollout_id=rollout_id,
                    seq=seq,
                    at=at,
                    kind=kind,
                    step=step,
                    weight=weight,
                    actor=actor,
                    message=message,
                    data=json.loads(data),
                )
                for seq, at, kind, step, weight, actor, message, data in rows
            ]

        return await self._tx(job)

    async def message_ref(self, rollout_id: str, notifier: str) -> str | None:
        async def job(db: Conn) -> str | None:
            if not await _one(db, "SELECT 1 FROM rollouts WHERE id = %s", (rollout_id,)):
                raise NotFound(rollout_id)
            row = await _one(
                db,
                "SELECT ref FROM message_refs WHERE rollout_id = %s AND notifier = %s",
                (rollout_id, notifier),
            )
            return None if row is None else str(row[0])

        return await self._tx(job)

    async def set_message_ref(self, rollout_id: str, notifier: str, ref: str) -> None:
        async def job(db: Conn) -> None:
            if not await _one(db, "SELECT 1 FROM rollouts WHERE id = %s", (rollout_id,)):
                raise NotFound(rollout_id)
            await db.execute(
                "INSERT INTO message_refs (rollout_id, notifier, ref) VALUES (%s, %s, %s)"
                " ON CONFLICT (rollout_id, notifier) DO UPDATE SET ref = excluded.ref",
                (rollout_id, notifier, ref),
            )

        await self._tx(job)

    async def prune(self, before: datetime, limit: int = 500) -> int:
        _aware(before)

        async def job(db: Conn) -> int:
            rows = await (
                await db.execute(
                    "SELECT id FROM rollouts WHERE NOT live AND updated_at < %s"
                    " ORDER BY updated_at LIMIT %s FOR UPDATE SKIP LOCKED",
                    (before, max(limit, 0)),
                )
            ).fetchall()
            ids = [r[0] for r in rows]
            if not ids:
                return 0
            await db.execute("SET LOCAL canary.pruning = 'on'")
            for table in ("events", "message_refs", "rollout_targets", "target_claims"):
                await db.execute(f"DELETE FROM {table} WHERE rollout_id = ANY(%s)", (ids,))
            await db.execute("DELETE FROM rollouts WHERE id = ANY(%s)", (ids,))
            return len(ids)

        return await self._tx(job)

    async def ping(self) -> None:
        await self._tx(lambda db: db.execute("SELECT 1"))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # ------------------------------------------------------------ leases

    async def heartbeat(self, ttl: float) -> int:
        """Record that this replica is alive; returns how many replicas are (itself included)."""

        async def job(db: Conn) -> int:
            await db.execute(
                "INSERT INTO replicas (id, seen_at) VALUES (%s, clock_timestamp())"
                " ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at",
                (self.replica,),
            )
            await db.execute(
                "DELETE FROM replicas"
                " WHERE seen_at < clock_timestamp() - make_interval(secs => %s)",
                (10 * ttl,),
            )
            row = await _one(
                db,
                "SELECT count(*) FROM replicas"
                " WHERE seen_at > clock_timestamp() - make_interval(secs => %s)",
                (ttl,),
            )
            return max(1, int(row[0])) if row else 1

        return await self._tx(job)

    async def claim(
        self, ttl: float, replicas: int, only: str | None = None
    ) -> builtins.list[Claimed]:
        """Take live rollouts nobody holds (or whose lease lapsed), up to this replica's share
        of all live rollouts among ``replicas``; ``only`` limits it to one rollout."""

        async def job(db: Conn) -> builtins.list[Claimed]:
            counts = await _one(
                db,
                "SELECT count(*), count(*) FILTER (WHERE owner = %s"
                " AND lease_until > clock_timestamp()) FROM rollouts WHERE live",
                (self.replica,),
            )
            assert counts is not None
            total, mine = counts
            room = -(-int(total) // max(replicas, 1)) - int(mine)
            if room <= 0:
                return []
            filter_one = "AND id = %(only)s" if only is not None else ""
            rows = await (
                await db.execute(
                    "UPDATE rollouts SET owner = %(me)s, fence = fence + 1,"
                    " lease_until = clock_timestamp() + make_interval(secs => %(ttl)s)"
                    " WHERE id IN (SELECT id FROM rollouts WHERE live"
                    " AND (owner IS NULL OR lease_until IS NULL"
                    " OR lease_until < clock_timestamp())"
                    f" {filter_one} ORDER BY created_at, id LIMIT %(room)s"
                    " FOR UPDATE SKIP LOCKED)"
                    " RETURNING id, fence",
                    {"me": self.replica, "ttl": ttl, "room": room, "only": only},
                )
            ).fetchall()
            return [Claimed(rid, fence, fence > 1) for rid, fence in rows]

        return await self._tx(job)

    async def renew(self, ttl: float) -> dict[str, int]:
        """Extend every lease this replica still holds; returns them (rollout id -> fence).
        A lease that lapsed is not renewed: it may be claimed by anyone, this replica too."""

        async def job(db: Conn) -> dict[str, int]:
            rows = await (
                await db.execute(
                    "UPDATE rollouts SET lease_until = clock_timestamp()"
                    " + make_interval(secs => %s) WHERE owner = %s AND live"
                    " AND lease_until > clock_timestamp() RETURNING id, fence",
                    (ttl, self.replica),
                )
            ).fetchall()
            return {rid: fence for rid, fence in rows}

        return await self._tx(job)

    async def release(self, leases: dict[str, int]) -> None:
        """Give up these leases now (a replica that stops): others need not wait for them to
        lapse."""
        if not leases:
            return

        async def job(db: Conn) -> None:
            await db.execute(
                "UPDATE rollouts SET owner = NULL, lease_until = NULL"
                " FROM unnest(%s::text[], %s::bigint[]) AS held(id, fence)"
                " WHERE rollouts.id = held.id AND rollouts.fence = held.fence",
                (list(leases), list(leases.values())),
            )
            await db.execute("DELETE FROM replicas WHERE id = %s", (self.replica,))

        await self._tx(job)

    async def notifications(self) -> AsyncIterator[Notice]:
        """Every committed write, as it is announced (until cancelled); raises ``StoreError``
        when the listening connection is lost (the caller reconnects)."""
        self._check_open()
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, connect_timeout=10, **_KEEPALIVE
            )
        except psycopg.Error as exc:
            raise StoreError(f"postgresql store {self.url}: {_first_line(exc)}") from exc
        try:
            await conn.execute(f"LISTEN {CHANNEL}")
            while True:
                async for n in conn.notifies(timeout=LISTEN_CHECK):
                    try:
                        data = json.loads(n.payload)
                        yield Notice(data["r"], data["f"], data["l"], data["w"], data["c"])
                    except (ValueError, KeyError, TypeError):
                        continue
                await conn.execute("SELECT 1")  # a quiet channel, or a dead connection?
        except psycopg.Error as exc:
            raise StoreError(f"postgresql store {self.url}: {_first_line(exc)}") from exc
        finally:
            await conn.close()

    # ------------------------------------------------------------ plumbing

    async def _append(
        self,
        db: Conn,
        rollout: Rollout | Quarantined,
        events: Sequence[NewEvent],
        at: datetime,
        first: int,
        created: bool = False,
    ) -> builtins.list[Event]:
        added = stamped(rollout, events, at, first)
        if added:
            async with db.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO events (rollout_id, seq, at, kind, step, weight, actor,"
                    " message, data) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [
                        (
                            e.rollout_id,
                            e.seq,
                            e.at,
                            e.kind,
                            e.step,
                            e.weight,
                            e.actor,
                            e.message,
                            json.dumps(e.data),
                        )
                        for e in added
                    ],
                )
        notice = {"r": rollout.id, "f": first, "l": first + len(added) - 1}
        notice |= {"w": self.replica, "c": created}
        await db.execute("SELECT pg_notify(%s, %s)", (CHANNEL, json.dumps(notice)))
        return added

    async def _tx(self, job: Callable[[Conn], Awaitable[_T]]) -> _T:
        """Run ``job`` in one transaction on a pooled connection."""
        pool = await self._open()
        try:
            async with pool.connection() as db, db.transaction():
                return await job(db)
        except psycopg.Error as exc:
            raise StoreError(f"postgresql store {self.url}: {_first_line(exc)}") from exc

    async def _open(self) -> AsyncConnectionPool[Conn]:
        self._check_open()
        if self._pool is not None:
            return self._pool
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                self._pool = await self._connect()
            return self._pool

    async def _connect(self) -> AsyncConnectionPool[Conn]:
        try:  # one plain connection first: a bad URL is one clear error, not pool retries
            async with await psycopg.AsyncConnection.connect(self._url, connect_timeout=10) as db:
                await _migrate(db, self.url)
        except psycopg.Error as exc:
            raise StoreError(f"postgresql store {self.url}: {_first_line(exc)}") from exc
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self._url,
            min_size=1,
            max_size=self._pool_size,
            open=False,
            timeout=30,
            check=AsyncConnectionPool.check_connection,  # a server restart costs no call
            kwargs={"options": "-c timezone=UTC", **_KEEPALIVE},
        )
        await pool.open(wait=True, timeout=30)
        return pool

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the store at {self.url} is closed")


async def _migrate(db: Conn, url: str) -> None:
    async with db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
        await db.execute("CREATE TABLE IF NOT EXISTS canary_schema (version INTEGER NOT NULL)")
        row = await _one(db, "SELECT max(version) FROM canary_schema")
        found = int(row[0]) if row and row[0] is not None else 0
        if found > SCHEMA_VERSION:
            raise StoreError(
                f"{url} has schema version {found}, but this canary knows only up to "
                f"{SCHEMA_VERSION}: it was written by a newer canary. Upgrade canary to use "
                "it; it is left as it is"
            )
        for number, script in enumerate(MIGRATIONS[found:], start=found + 1):
            await db.execute(script.encode())
            await db.execute("INSERT INTO canary_schema (version) VALUES (%s)", (number,))


_RECORD = (
    "SELECT id, name, phase, live, version, idempotency_key, created_at, updated_at, record"
    " FROM rollouts"
)


async def _read(db: Conn, row: TupleRow) -> Rollout | Quarantined:
    rid, name, phase, live, version, key, created_at, updated_at, record = row
    found = read_record(
        record,
        id=rid,
        name=name,
        phase=phase,
        live=bool(live),
        version=version,
        created_at=created_at,
        updated_at=updated_at,
        idempotency_key=key,
    )
    if isinstance(found, Quarantined):
        keys = await (
            await db.execute(
                "SELECT target_key FROM rollout_targets WHERE rollout_id = %s ORDER BY target_key",
                (rid,),
            )
        ).fetchall()
        found = replace(found, targets=tuple(k for (k,) in keys))
    return found


async def _one(db: Conn, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> TupleRow | None:
    return await (await db.execute(sql, params)).fetchone()


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _aware(moment: datetime) -> None:
    if moment.utcoffset() is None:
        raise ValueError(f"{moment} has no timezone; the store keeps only aware UTC times")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
