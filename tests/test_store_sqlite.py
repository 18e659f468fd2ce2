"""What only the SQLite file can show (the contract runs in test_store_contract.py)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from store_contract import T0, make_rollout, new_events

from canary.model import Phase
from canary.store import MemoryStore, SQLiteStore, StoreError, TargetBusy, open_store
from canary.store.sqlite import MIGRATIONS, SCHEMA_VERSION, _statements


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "canary.db")
    yield store
    await store.close()


@contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain connection, as an operator poking at the file would have."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        yield db
    finally:
        db.close()


async def test_everything_survives_close_and_reopen(store: SQLiteStore) -> None:
    r, created = await store.create(make_rollout("checkout", key="build-1"), new_events("a"), T0)
    r, saved = await store.save(r.model_copy(update={"phase": Phase.BAKING}), new_events("b"), T0)
    await store.close()

    reopened = SQLiteStore(store.path)
    try:
        assert await reopened.get(r.id) == r
        assert await reopened.find_by_key("build-1") == r
        assert await reopened.events(r.id) == created + saved
        with pytest.raises(TargetBusy):  # the claim on the target survived too
            await reopened.create(make_rollout("checkout", name="other"), [], T0)
        r, more = await reopened.save(r, new_events("c"), T0)
        assert [e.seq for e in more] == [3]
    finally:
        await reopened.close()


async def test_a_message_ref_survives_close_and_reopen(store: SQLiteStore) -> None:
    r, _ = await store.create(make_rollout("checkout"), [], T0)
    await store.set_message_ref(r.id, "slack", "C1 1.000100")
    await store.close()

    reopened = SQLiteStore(store.path)
    try:
        assert await reopened.message_ref(r.id, "slack") == "C1 1.000100"
    finally:
        await reopened.close()


async def test_a_file_of_schema_1_is_migrated_and_keeps_its_rollouts(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with raw(path) as db:  # what the first release wrote
        for statement in _statements(MIGRATIONS[0]):
            db.execute(statement)
        db.execute("PRAGMA user_version = 1")
    old = SQLiteStore(path)
    try:
        r, _ = await old.create(make_rollout("checkout"), [], T0)
        await old.set_message_ref(r.id, "slack", "C1 1.0")
        assert await old.message_ref(r.id, "slack") == "C1 1.0"
        assert await old.get(r.id) == r
    finally:
        await old.close()


async def test_new_file_uses_wal_and_the_latest_schema(store: SQLiteStore) -> None:
    await store.ping()

    with raw(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


async def test_events_cannot_be_changed_or_deleted(store: SQLiteStore) -> None:
    r, _ = await store.create(make_rollout(), new_events("created"), T0)
    with raw(store.path) as db:
        for statement in ("UPDATE events SET message = 'forged'", "DELETE FROM events"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                db.execute(statement)

    assert [e.message for e in await store.events(r.id)] == ["created happened"]


async def test_a_file_from_a_newer_canary_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with raw(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    store = SQLiteStore(path)

    with pytest.raises(StoreError, match="newer canary") as caught:
        await store.ping()
    await store.close()

    assert f"schema version {SCHEMA_VERSION + 1}" in str(caught.value)
    with raw(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION + 1,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == []


async def test_a_path_that_cannot_be_opened_is_a_store_error(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "missing-dir" / "canary.db")

    with pytest.raises(StoreError, match="missing-dir"):
        await store.ping()
    await store.close()


async def test_naive_datetimes_are_refused(store: SQLiteStore) -> None:
    rollout = make_rollout()

    with pytest.raises(ValueError, match="no timezone"):
        await store.create(rollout, [], datetime(2024, 1, 1))

    assert await store.list() == []


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///canary.db", "canary.db"),
        ("sqlite:///./data/canary.db", "data/canary.db"),
        ("sqlite:////var/lib/canary/canary.db", "/var/lib/canary/canary.db"),
    ],
)
async def test_open_store_sqlite_urls(url: str, path: str) -> None:
    store = open_store(url)

    assert isinstance(store, SQLiteStore)
    assert store.path == Path(path)
    await store.close()


async def test_open_store_relative_path_is_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///canary.db")

    await store.ping()
    await store.close()

    assert (tmp_path / "canary.db").is_file()


async def test_open_store_memory_url() -> None:
    assert isinstance(open_store("memory://"), MemoryStore)


@pytest.mark.parametrize(
    "url",
    [
        "postgres://db/canary",
        "postgresql://",
        "sqlite://canary.db",
        "sqlite:///",
        "memory://x",
        "canary.db",
        "",
    ],
)
def test_open_store_refuses_other_urls(url: str) -> None:
    with pytest.raises(ValueError, match="unsupported store URL") as caught:
        open_store(url)

    message = str(caught.value)
    assert "sqlite:///path/to/canary.db" in message
    assert "postgresql://user:password@host:5432/dbname" in message
    assert "memory://" in message


async def test_the_daemon_prunes_ended_rollouts_past_retention(store: SQLiteStore) -> None:
    from canary.clock import RealClock
    from canary.daemon import keep_retention

    clock = RealClock()
    now = clock.now()
    old, _ = await store.create(make_rollout("old", at=now - timedelta(days=40)), [], now)
    old, _ = await store.save(
        old.model_copy(update={"phase": Phase.SUCCEEDED}), [], now - timedelta(days=31)
    )
    kept, _ = await store.create(make_rollout("kept"), [], now)
    kept, _ = await store.save(
        kept.model_copy(update={"phase": Phase.SUCCEEDED}), [], now - timedelta(days=29)
    )
    forever = asyncio.create_task(keep_retention(store, clock, 0, 0.01))
    await asyncio.sleep(0.1)
    assert forever.done(), "retention 0 keeps everything: nothing runs"
    assert len(await store.list()) == 2

    task = asyncio.create_task(keep_retention(store, clock, 30, 0.01))
    try:
        for _ in range(200):
            if [r.id for r in await store.list()] == [kept.id]:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [r.id for r in await store.list()] == [kept.id]
