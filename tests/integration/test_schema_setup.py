"""Collections, validators and indexes are created idempotently, also by racing instances."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from pymongo import ASCENDING, IndexModel

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


async def test_retired_indexes_are_dropped_at_start(mongodb_uri: str) -> None:
    """An index an earlier version made and no query uses any more costs every insert."""
    store = MongoStore.connect(mongodb_uri, f"ledger_schema_{uuid.uuid4().hex[:8]}")
    try:
        await store.db.versions.create_indexes(
            [
                IndexModel([("artifact_id", ASCENDING), ("version_number", ASCENDING)]),
                IndexModel([("run_id", ASCENDING)], sparse=True),
            ]
        )
        retired = {("artifact_id", "version_number"), ("run_id",)}
        assert await _index_keys(store) >= retired
        await store.ensure_schema()
        keys = await _index_keys(store)
        assert not keys & retired
        assert ("campaign_id", "artifact_id", "version_number") in keys
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()


async def _index_keys(store: MongoStore) -> set[tuple[str, ...]]:
    return {tuple(i["key"]) async for i in await store.db.versions.list_indexes()}


async def test_artifact_documents_lose_what_follows_from_their_versions_at_start(
    mongodb_uri: str,
) -> None:
    """Earlier versions kept the count and the active version in the artifact document; new
    versions no longer rewrite it, so a copy left there would go stale."""
    store = MongoStore.connect(mongodb_uri, f"ledger_schema_{uuid.uuid4().hex[:8]}")
    try:
        created = datetime(2026, 11, 1, tzinfo=UTC)
        older = {
            "_id": "a-1",
            "campaign_id": "c-1",
            "artifact_type": "copy",
            "created_at": created,
            "updated_at": created,
            "version_count": 3,
            "active_version_id": "v-3",
        }
        await store.db.artifacts.insert_one(older)
        await store.ensure_schema()
        assert await store.db.artifacts.find_one({"_id": "a-1"}) == {
            "_id": "a-1",
            "campaign_id": "c-1",
            "artifact_type": "copy",
            "created_at": created,
        }
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()
