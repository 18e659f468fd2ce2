"""Where rollouts are kept: the ``Store`` protocol, its backends, and ``open_store(url)``.

The daemon is configured with a URL (``settings.store_url``) rather than a class, so the
backend can change without touching code: ``sqlite:///canary.db`` for a real daemon,
``memory://`` for simulations and tests.
"""

from __future__ import annotations

from canary.store.base import (
    DuplicateKey,
    NotFound,
    Quarantined,
    StaleWrite,
    Store,
    StoreError,
    TargetBusy,
    Unreadable,
)
from canary.store.memory import MemoryStore
from canary.store.sqlite import SQLiteStore

__all__ = [
    "DuplicateKey",
    "MemoryStore",
    "NotFound",
    "Quarantined",
    "SQLiteStore",
    "StaleWrite",
    "Store",
    "StoreError",
    "TargetBusy",
    "Unreadable",
    "open_store",
]

_SQLITE = "sqlite:///"
_MEMORY = "memory://"


def open_store(url: str) -> Store:
    """The store at ``url``; no I/O happens until its first call (``await store.ping()``).

    ``sqlite:///`` is followed by the file's path: ``sqlite:///data/canary.db`` is relative
    to the working directory, ``sqlite:////var/lib/canary.db`` is absolute. ``memory://``
    keeps everything in this process. Anything else raises ``ValueError``.
    """
    if url == _MEMORY:
        return MemoryStore()
    if url.startswith(_SQLITE) and len(url) > len(_SQLITE):
        return SQLiteStore(url.removeprefix(_SQLITE))
    raise ValueError(
        f"unsupported store URL {url!r}; use {_SQLITE}path/to/canary.db (a relative path), "
        f"{_SQLITE}/absolute/path/canary.db, or {_MEMORY} (nothing kept after exit)"
    )
