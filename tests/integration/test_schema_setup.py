"""Collections, validators and indexes are created idempotently, also by racing instances."""

from __future__ import annotations

import asyncio
import uuid

from service.adapters.mongo_schema import ENTITY_COLLECTIONS, INDEXES
from service.adapters.mongo_store import MongoStore


async def test_instances_starting_together_all_set_up_the_schema(mongodb_uri: str) -> None:
    # The race (two instances creating one collection) is timing-dependent: run it a few times.
    for _ in range(5):
        database = f"ledger_schema_{uuid.uuid4().hex[:8]}"
        stores = [MongoStore.connect(mongodb_uri, database) for _ in range(4)]
        try:
            await asyncio.gather(*(store.ensure_schema() for store in stores))
            await stores[0].ensure_schema()  # and again, on a database already set up
            names = set(await stores[0].db.list_collection_names())
            assert set(INDEXES) <= names
            assert set(ENTITY_COLLECTIONS) <= names
        finally:
            await stores[0].client.drop_database(database)
            for store in stores:
                await store.close()
