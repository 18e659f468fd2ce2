"""The in-process store against the store contract."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from store_contract import StoreContract

from canary.store import MemoryStore, Store


class TestMemoryStore(StoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[Store]:
        store = MemoryStore()
        yield store
        await store.close()
