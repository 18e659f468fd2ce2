"""Where rollouts are kept: the ``Store`` protocol, its backends, and ``open_store(url)``.

The daemon is configured with a URL (``settings.store_url``) rather than a class, so the
backend can change without touching code: ``sqlite:///canary.db`` for a real daemon,
``postgresql://user@host/db`` for several replicas, ``memory://`` for simulations and tests.
"""

from __future__ import annotations

from canary.store.base import (
    DuplicateKey,
    FrozenField,
    LeaseLost,
    NotFound,
    Quarantined,
    StaleWrite,
    Store,
    StoreError,
    TargetBusy,
    Unreadable,
    display_url,
)
from canary.store.memory import MemoryStore
from canary.store.sqlite import SQLiteStore

__all__ = [
    "DuplicateKey",
    "FrozenField",
    "LeaseLost",
    "MemoryStore",
    "NotFound",
    "Quarantined",
    "SQLiteStore",
    "StaleWrite",
    "Store",
    "StoreError",
    "TargetBusy",
    "Unreadable",
    "display_url",
    "open_store",
]

_SQLITE = "sqlite:///"
_MEMORY = "memory://"
_POSTGRESQL = "postgresql://"


def open_store(url: str) -> Store:
    """The store at ``url``; no I/O happens until its first call (``await store.ping()``).

    ``sqlite:///`` is followed by the file's path: ``sqlite:///data/canary.db`` is relative
    to the working directory, ``sqlite:////var/lib/canary.db`` is absolute. ``memory://``
    keeps everything in this process. ``postgresql://user:password@host:5432/db`` (libpq's
    URL, query parameters such as ``sslmode`` included) is a PostgreSQL database, which
    several daemons may share. Anything else raises ``ValueError``.
    """
    if url == _MEMORY:
        return MemoryStore()
    if url.startswith(_SQLITE) and len(url) > len(_SQLITE):
        return SQLiteStore(url.removeprefix(_SQLITE))
    if url.startswith(_POSTGRESQL) and len(url) > len(_POSTGRESQL):
        from canary.store.postgres import PostgresStore  # psycopg loads only when used

        return PostgresStore(url)
    raise ValueError(
        f"unsupported store URL {display_url(url)!r}; use {_SQLITE}path/to/canary.db (a "
        f"relative path), {_SQLITE}/absolute/path/canary.db, "
        f"{_POSTGRESQL}user:password@host:5432/dbname (several replicas), or {_MEMORY} "
        "(nothing kept after exit)"
    )
