"""Test-wide rules: a test that leaves an asyncio task running fails.

A rollout task left pending after a test is the test-suite version of a daemon that
cannot stop cleanly (kopf's rule): it is reported, never ignored.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
async def no_task_left_pending() -> AsyncIterator[None]:
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)
    left = [
        t for t in asyncio.all_tasks() - before if t is not asyncio.current_task() and not t.done()
    ]
    for task in left:
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)
    assert not left, f"tasks left pending: {[t.get_name() for t in left]}"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No CANARY_* variable from the outer environment (CI sets some) leaks into a test."""
    for name in list(os.environ):
        if name.upper().startswith("CANARY_"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture(scope="session")
def k8s() -> Iterator[Any]:
    """One real Kubernetes API server (etcd + kube-apiserver) per session: tests/k8sserver.py."""
    from k8sserver import session_server

    yield from session_server()


@pytest.fixture
def kube(k8s: Any) -> Iterator[Any]:
    """The daemon's Kubernetes clients, as the test user ``canary`` (get and patch rights)."""
    from strategies.k8s import KubeClients

    made = KubeClients(str(k8s.kubeconfig("canary")))
    yield made
    made.close()


@pytest.fixture(scope="session")
def pg() -> Iterator[Any]:
    """One real PostgreSQL server per session (Debian's binaries): tests/pgserver.py."""
    from pgserver import session_server

    yield from session_server()


@pytest.fixture
def pg_url(pg: Any) -> Iterator[str]:
    """The URL of a fresh, empty database on that server, dropped after the test."""
    url: str = pg.database()
    yield url
    pg.drop(url)
