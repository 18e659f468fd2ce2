"""The store contract (tests/store_contract.py) on every backend: the in-process store, a
SQLite file, and a real PostgreSQL server (tests/pgserver.py; a fresh database per test)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from store_contract import Corrupt, StoreContract

from canary.store import MemoryStore, SQLiteStore, Store
from canary.store.postgres import PostgresStore

BACKENDS = ["memory", "sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Store]:
    made: Store
    if backend == "memory":
        made = MemoryStore()
    elif backend == "sqlite":
        made = SQLiteStore(tmp_path / "canary.db")
    else:
        made = PostgresStore(request.getfixturevalue("pg_url"))
    yield made
    await made.close()


@pytest.fixture
def corrupt(backend: str, request: pytest.FixtureRequest) -> Corrupt:
    """Replace a stored record by text, as a hand edit (or an older canary) would."""

    async def replace(store: Store, rollout_id: str, text: str) -> None:
        if isinstance(store, MemoryStore):
            store.replace_record(rollout_id, text)
        elif isinstance(store, SQLiteStore):
            db = sqlite3.connect(store.path, isolation_level=None)
            try:
                db.execute("UPDATE rollouts SET record = ? WHERE id = ?", (text, rollout_id))
            finally:
                db.close()
        else:
            url = request.getfixturevalue("pg_url")
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as db:
                await db.execute(
                    "UPDATE rollouts SET record = %s WHERE id = %s", (text, rollout_id)
                )

    return replace


class TestStore(StoreContract):
    """The whole contract, once per backend of ``BACKENDS``."""
