"""The in-process store against the store contract."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from store_contract import Corrupt, StoreContract

from canary.store import MemoryStore, Store


class TestMemoryStore(StoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[Store]:
        store = MemoryStore()
        yield store
        await store.close()

    @pytest.fixture
    def corrupt(self) -> Corrupt:
        async def replace(store: Store, rollout_id: str, text: str) -> None:
            assert isinstance(store, MemoryStore)
            store.replace_record(rollout_id, text)

        return replace
