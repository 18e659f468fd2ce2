"""The default store: one SQLite file that a daemon restart or crash never loses a rollout from.

How it is built, and why:

* ``sqlite3`` blocks and the engine's event loop must not, so every call runs on one
  dedicated worker thread. That thread is also the only user of the one connection, so
  calls are serialised without any locking of our own.
* ``create`` and ``save`` are each one ``BEGIN IMMEDIATE`` transaction: the write lock is
  taken up front, so the version check, the record, the target claims and the events
  commit together or not at all, even against another process (the CLI) on the same file.
* The whole record is kept as JSON; the columns beside it are copies made only to query
  on. Events are rows of their own, and triggers refuse to UPDATE or DELETE them: the
  answer to "why did it do that?" must never be rewritten.
* A record that no longer validates is read as ``Quarantined`` from the columns beside it
  (``base.read_record``): listed, never returned by ``live``, its claims kept.
* Datetimes are stored as UTC ISO-8601 text with a fixed number of digits, so text order
  is time order.
* The schema is a numbered list of migrations tracked in ``PRAGMA user_version``. A file
  written by a newer canary is refused and left untouched, never downgraded.

``SQLiteStore(path)`` does no I/O: the first call opens the file (creating and migrating it
if needed) on the worker thread, so ``await store.ping()`` at startup surfaces a bad path
or a too-new file before any rollout is touched. Cancelling an awaited write does not stop
it once the worker has started it; it may still commit, so reload after a cancelled save.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

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

_T = TypeVar("_T")

# Append only: a released canary may have written any of these, so never edit one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE rollouts (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        phase TEXT NOT NULL,
        live INTEGER NOT NULL CHECK (live IN (0, 1)),
        version INTEGER NOT NULL,
        idempotency_key TEXT UNIQUE,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        record TEXT NOT NULL
    );
    CREATE INDEX rollouts_by_age ON rollouts (created_at, id);
    CREATE INDEX rollouts_live_by_age ON rollouts (created_at, id) WHERE live = 1;

    -- One row per target a live rollout holds: the primary key is the one-rollout rule.
    CREATE TABLE target_claims (
        target_key TEXT PRIMARY KEY,
        rollout_id TEXT NOT NULL REFERENCES rollouts (id)
    ) WITHOUT ROWID;

    -- Every target a rollout ever had, live or not, for list(target=...).
    CREATE TABLE rollout_targets (
        target_key TEXT NOT NULL,
        rollout_id TEXT NOT NULL REFERENCES rollouts (id),
        PRIMARY KEY (target_key, rollout_id)
    ) WITHOUT ROWID;

    CREATE TABLE events (
        rollout_id TEXT NOT NULL REFERENCES rollouts (id),
        seq INTEGER NOT NULL CHECK (seq >= 1),
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        step INTEGER NOT NULL,
        weight REAL NOT NULL,
        actor TEXT,
        message TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (rollout_id, seq)
    ) WITHOUT ROWID;
    CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    BEGIN
        SELECT RAISE(ABORT, 'events are append-only');
    END;
    CREATE TRIGGER events_no_delete BEFORE DELETE ON events
    BEGIN
        SELECT RAISE(ABORT, 'events are append-only');
    END;
    """,
    """
    -- A notifier's handle on its message about a rollout (Slack: channel and ts).
    CREATE TABLE message_refs (
        rollout_id TEXT NOT NULL REFERENCES rollouts (id),
        notifier TEXT NOT NULL,
        ref TEXT NOT NULL,
        PRIMARY KEY (rollout_id, notifier)
    ) WITHOUT ROWID;
    """,
    """
    -- Retention: events may be deleted only for the rollouts a prune lists here, in the
    -- prune's own transaction (which empties it again); they stay append-only otherwise.
    CREATE TABLE pruning (rollout_id TEXT PRIMARY KEY) WITHOUT ROWID;
    DROP TRIGGER events_no_delete;
    CREATE TRIGGER events_no_delete BEFORE DELETE ON events
    WHEN NOT EXISTS (SELECT 1 FROM pruning WHERE rollout_id = OLD.rollout_id)
    BEGIN
        SELECT RAISE(ABORT, 'events are append-only');
    END;
    CREATE INDEX rollouts_ended ON rollouts (updated_at) WHERE live = 0;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class SQLiteStore:
    """The ``Store`` protocol over one SQLite file; see the module docstring for opening."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="canary-sqlite")
        self._db: sqlite3.Connection | None = None  # touched only on the worker thread
        self._closed = False
        self._reported: set[str] = set()  # quarantined rollouts already logged by live()

    @property
    def path(self) -> Path:
        return self._path

    async def create(
        self, rollout: Rollout, events: Sequence[NewEvent], at: datetime
    ) -> tuple[Rollout, builtins.list[Event]]:
        if rollout.version != 0:
            raise ValueError(f"a new rollout has version 0, not {rollout.version}")
        return await self._run(lambda db: _create(db, rollout, events, at))

    async def get(self, rollout_id: str) -> Rollout:
        return await self._run(lambda db: _get(db, rollout_id))

    async def save(
        self,
        rollout: Rollout,
        events: Sequence[NewEvent],
        at: datetime,
        *,
        fence: int | None = None,
    ) -> tuple[Rollout, builtins.list[Event]]:
        if fence is not None:
            raise ValueError("the SQLite store has no leases (one daemon per file): no fence")
        return await self._run(lambda db: _save(db, rollout, events, at))

    async def prune(self, before: datetime, limit: int = 500) -> int:
        cutoff = _iso(before)
        return await self._run(lambda db: _prune(db, cutoff, limit))

    async def list(
        self,
        *,
        phase: Phase | None = None,
        target: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> builtins.list[Rollout | Quarantined]:
        return await self._run(lambda db: _list(db, phase, target, limit, before))

    async def live(self) -> builtins.list[Rollout]:
        found = await self._run(_live)
        return runnable_only(found, self._reported)

    async def resolve(
        self,
        quarantined: Quarantined,
        phase: Phase,
        reason: str,
        events: Sequence[NewEvent],
        at: datetime,
    ) -> tuple[Quarantined, builtins.list[Event]]:
        return await self._run(lambda db: _resolve(db, quarantined, phase, reason, events, at))

    async def find_by_key(self, idempotency_key: str) -> Rollout | None:
        return await self._run(lambda db: _find_by_key(db, idempotency_key))

    async def events(
        self, rollout_id: str, after: int = 0, limit: int = 1000
    ) -> builtins.list[Event]:
        return await self._run(lambda db: _events(db, rollout_id, after, limit))

    async def message_ref(self, rollout_id: str, notifier: str) -> str | None:
        return await self._run(lambda db: _message_ref(db, rollout_id, notifier))

    async def set_message_ref(self, rollout_id: str, notifier: str, ref: str) -> None:
        await self._run(lambda db: _set_message_ref(db, rollout_id, notifier, ref))

    async def ping(self) -> None:
        await self._run(lambda db: db.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True  # refuse new calls; those already queued still run first
        await asyncio.get_running_loop().run_in_executor(self._worker, self._disconnect)
        self._worker.shutdown()

    async def _run(self, job: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._closed:
            raise StoreError(f"the store at {self._path} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._worker, self._call, job)

    def _call(self, job: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``job`` on the worker thread, opening the file on first use."""
        try:
            if self._db is None:
                self._db = _connect(self._path)
            return job(self._db)
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite store {self._path}: {exc}") from exc

    def _disconnect(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


# Everything below runs on the worker thread.


def _connect(path: Path) -> sqlite3.Connection:
    # Autocommit mode: transactions are the explicit BEGIN IMMEDIATE ... COMMIT below.
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout = 5000")  # wait for another process's write, don't fail
        db.execute("PRAGMA foreign_keys = ON")
        found = _user_version(db)
        if found > SCHEMA_VERSION:
            raise StoreError(
                f"{path} has schema version {found}, but this canary knows only up to "
                f"{SCHEMA_VERSION}: it was written by a newer canary. Upgrade canary to use "
                "it; it is left as it is"
            )
        db.execute("PRAGMA journal_mode = WAL")  # readers and the writer don't block each other
        # FULL: every commit is fsynced, so not even a power loss can undo a stored intent
        # ("shifting to 25%") after the backend was called. Rollout writes are few (one per
        # action or evaluation), so the cost is negligible against losing track of traffic.
        db.execute("PRAGMA synchronous = FULL")
        _migrate(db, found)
    except BaseException:
        db.close()
        raise
    return db


def _user_version(db: sqlite3.Connection) -> int:
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    return version


def _migrate(db: sqlite3.Connection, found: int) -> None:
    for number, script in enumerate(MIGRATIONS[found:], start=found + 1):
        with _transaction(db):
            if _user_version(db) >= number:  # another process got there first
                continue
            for statement in _statements(script):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")


def _statements(script: str) -> Iterator[str]:
    """Split a script into statements; ``complete_statement`` knows trigger bodies."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    if pending.strip():
        raise ValueError(f"unterminated SQL statement in a migration: {pending.strip()!r}")


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _iso(moment: datetime) -> str:
    """UTC with all six fractional digits, so that text order is time order."""
    if moment.utcoffset() is None:
        raise ValueError(f"{moment} has no timezone; the store keeps only aware UTC times")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _columns(rollout: Rollout) -> dict[str, Any]:
    return {
        "id": rollout.id,
        "name": rollout.name,
        "phase": rollout.phase.value,
        "live": rollout.phase.live,
        "version": rollout.version,
        "idempotency_key": rollout.idempotency_key,
        "created_at": _iso(rollout.created_at),
        "updated_at": _iso(rollout.updated_at),
        "record": rollout.model_dump_json(),
    }


def _create(
    db: sqlite3.Connection, rollout: Rollout, events: Sequence[NewEvent], at: datetime
) -> tuple[Rollout, list[Event]]:
    stored = rollout.model_copy(update={"version": 1, "updated_at": at})
    columns = _columns(stored)
    keys = [(t.key, stored.id) for t in stored.targets]
    with _transaction(db):
        if db.execute("SELECT 1 FROM rollouts WHERE id = ?", (stored.id,)).fetchone():
            raise StoreError(f"rollout {stored.id} already exists")
        key = stored.idempotency_key
        if key is not None:
            owner = db.execute("SELECT id FROM rollouts WHERE idempotency_key = ?", (key,))
            if (row := owner.fetchone()) is not None:
                raise DuplicateKey(key, row[0])
        if stored.phase.live:
            for target_key, _ in keys:
                holder = db.execute(
                    "SELECT c.rollout_id, r.name FROM target_claims c"
                    " JOIN rollouts r ON r.id = c.rollout_id WHERE c.target_key = ?",
                    (target_key,),
                ).fetchone()
                if holder is not None:
                    raise TargetBusy(target_key, holder[0], holder[1])
        db.execute(
            "INSERT INTO rollouts (id, name, phase, live, version, idempotency_key, created_at,"
            " updated_at, record) VALUES (:id, :name, :phase, :live, :version, :idempotency_key,"
            " :created_at, :updated_at, :record)",
            columns,
        )
        db.executemany("INSERT INTO rollout_targets (target_key, rollout_id) VALUES (?, ?)", keys)
        if stored.phase.live:
            db.executemany("INSERT INTO target_claims (target_key, rollout_id) VALUES (?, ?)", keys)
        return stored, _append(db, stored, events, at, first=1)


def _save(
    db: sqlite3.Connection, rollout: Rollout, events: Sequence[NewEvent], at: datetime
) -> tuple[Rollout, list[Event]]:
    stored = rollout.model_copy(update={"version": rollout.version + 1, "updated_at": at})
    columns = _columns(stored)
    with _transaction(db):
        row = db.execute(
            "SELECT version, record FROM rollouts WHERE id = ?", (stored.id,)
        ).fetchone()
        if row is None:
            raise NotFound(stored.id)
        if row[0] != rollout.version:
            raise StaleWrite(stored.id, rollout.version, row[0])
        changed = frozen_changes(_parsed(row[1]), rollout)
        if changed:
            raise FrozenField(stored.id, changed)
        db.execute(
            "UPDATE rollouts SET name = :name, phase = :phase, live = :live, version = :version,"
            " updated_at = :updated_at, record = :record WHERE id = :id",
            columns,
        )
        if stored.phase.terminal:
            db.execute("DELETE FROM target_claims WHERE rollout_id = ?", (stored.id,))
        (last,) = db.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE rollout_id = ?", (stored.id,)
        ).fetchone()
        return stored, _append(db, stored, events, at, first=last + 1)


def _parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _prune(db: sqlite3.Connection, cutoff: str, limit: int) -> int:
    with _transaction(db):
        ids = [
            (rid,)
            for (rid,) in db.execute(
                "SELECT id FROM rollouts WHERE live = 0 AND updated_at < ?"
                " ORDER BY updated_at LIMIT ?",
                (cutoff, max(limit, 0)),
            )
        ]
        db.executemany("INSERT INTO pruning (rollout_id) VALUES (?)", ids)
        for table in ("events", "message_refs", "rollout_targets", "target_claims"):
            db.executemany(f"DELETE FROM {table} WHERE rollout_id = ?", ids)
        db.executemany("DELETE FROM rollouts WHERE id = ?", ids)
        db.execute("DELETE FROM pruning")
        return len(ids)


def _append(
    db: sqlite3.Connection,
    rollout: Rollout | Quarantined,
    events: Sequence[NewEvent],
    at: datetime,
    first: int,
) -> list[Event]:
    added = stamped(rollout, events, at, first)
    db.executemany(
        "INSERT INTO events (rollout_id, seq, at, kind, step, weight, actor, message, data)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                e.rollout_id,
                e.seq,
                _iso(e.at),
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
    return added


_RECORD = (
    "SELECT id, name, phase, live, version, idempotency_key, created_at, updated_at, record"
    " FROM rollouts"
)


def _read(db: sqlite3.Connection, row: tuple[Any, ...]) -> Rollout | Quarantined:
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
    if isinstance(found, Quarantined):  # the only case that needs its target keys
        keys = db.execute(
            "SELECT target_key FROM rollout_targets WHERE rollout_id = ? ORDER BY target_key",
            (rid,),
        )
        found = replace(found, targets=tuple(k for (k,) in keys))
    return found


def _get(db: sqlite3.Connection, rollout_id: str) -> Rollout:
    row = db.execute(f"{_RECORD} WHERE id = ?", (rollout_id,)).fetchone()
    if row is None:
        raise NotFound(rollout_id)
    return runnable(_read(db, row))


def _list(
    db: sqlite3.Connection,
    phase: Phase | None,
    target: str | None,
    limit: int,
    before: str | None,
) -> list[Rollout | Quarantined]:
    where: list[str] = []
    params: list[str | int] = []
    if phase is not None:
        where.append("phase = ?")
        params.append(phase.value)
    if target is not None:
        where.append("id IN (SELECT rollout_id FROM rollout_targets WHERE target_key = ?)")
        params.append(target)
    if before is not None:
        cursor = db.execute("SELECT created_at, id FROM rollouts WHERE id = ?", (before,))
        if (row := cursor.fetchone()) is None:
            raise NotFound(before)
        where.append("(created_at, id) < (?, ?)")
        params.extend(row)
    sql = _RECORD
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
    params.append(max(limit, 0))
    return [_read(db, row) for row in db.execute(sql, params).fetchall()]


def _live(db: sqlite3.Connection) -> list[Rollout | Quarantined]:
    rows = db.execute(f"{_RECORD} WHERE live = 1 ORDER BY created_at, id").fetchall()
    return [_read(db, row) for row in rows]


def _find_by_key(db: sqlite3.Connection, key: str) -> Rollout | None:
    row = db.execute(f"{_RECORD} WHERE idempotency_key = ?", (key,)).fetchone()
    return None if row is None else runnable(_read(db, row))


def _resolve(
    db: sqlite3.Connection,
    quarantined: Quarantined,
    phase: Phase,
    reason: str,
    events: Sequence[NewEvent],
    at: datetime,
) -> tuple[Quarantined, list[Event]]:
    stored = resolved(quarantined, phase, reason, at)
    text = stored.record if isinstance(stored.record, str) else json.dumps(stored.record)
    with _transaction(db):
        row = db.execute("SELECT version FROM rollouts WHERE id = ?", (quarantined.id,)).fetchone()
        if row is None:
            raise NotFound(quarantined.id)
        if row[0] != quarantined.version:
            raise StaleWrite(quarantined.id, quarantined.version, row[0])
        db.execute(
            "UPDATE rollouts SET phase = ?, live = ?, version = ?, updated_at = ?, record = ?"
            " WHERE id = ?",
            (phase.value, phase.live, stored.version, _iso(at), text, quarantined.id),
        )
        if phase.terminal:
            db.execute("DELETE FROM target_claims WHERE rollout_id = ?", (quarantined.id,))
        (last,) = db.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE rollout_id = ?", (quarantined.id,)
        ).fetchone()
        return stored, _append(db, quarantined, events, at, first=last + 1)


def _events(db: sqlite3.Connection, rollout_id: str, after: int, limit: int) -> list[Event]:
    if db.execute("SELECT 1 FROM rollouts WHERE id = ?", (rollout_id,)).fetchone() is None:
        raise NotFound(rollout_id)
    rows = db.execute(
        "SELECT seq, at, kind, step, weight, actor, message, data FROM events"
        " WHERE rollout_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        (rollout_id, after, max(limit, 0)),
    )
    return [
        Event(
            rollout_id=rollout_id,
            seq=seq,
            at=datetime.fromisoformat(at),
            kind=kind,
            step=step,
            weight=weight,
            actor=actor,
            message=message,
            data=json.loads(data),
        )
        for seq, at, kind, step, weight, actor, message, data in rows
    ]


def _exists(db: sqlite3.Connection, rollout_id: str) -> None:
    if db.execute("SELECT 1 FROM rollouts WHERE id = ?", (rollout_id,)).fetchone() is None:
        raise NotFound(rollout_id)


def _message_ref(db: sqlite3.Connection, rollout_id: str, notifier: str) -> str | None:
    _exists(db, rollout_id)
    row = db.execute(
        "SELECT ref FROM message_refs WHERE rollout_id = ? AND notifier = ?",
        (rollout_id, notifier),
    ).fetchone()
    return str(row[0]) if row is not None else None


def _set_message_ref(db: sqlite3.Connection, rollout_id: str, notifier: str, ref: str) -> None:
    with _transaction(db):
        _exists(db, rollout_id)
        db.execute(
            "INSERT INTO message_refs (rollout_id, notifier, ref) VALUES (?, ?, ?) "
            "ON CONFLICT (rollout_id, notifier) DO UPDATE SET ref = excluded.ref",
            (rollout_id, notifier, ref),
        )
