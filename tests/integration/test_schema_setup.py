"""Collections, validators and indexes are created idempotently, also by racing instances."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from pymongo import ASCENDING, IndexModel

from service.adapters.mongo_schema import (
    CAMPAIGN_STATE_FIELDS,
    ENTITY_COLLECTIONS,
    INDEXES,
    LEGACY_SNAPSHOTS,
    TOMBSTONES,
)
from service.adapters.mongo_store import MongoStore
from service.app.processor import BatchProcessor
from tests.integration.test_owned_campaigns import Recorder
from tests.unit.factories import generated


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


async def test_snapshot_documents_of_an_earlier_version_move_into_their_campaigns_at_start(
    mongodb_uri: str,
) -> None:
    """Earlier versions kept each campaign's snapshot in a document of its own: at start it
    moves into the campaign document (a tombstone into the tombstones), and the campaign goes
    on from the state it held."""
    store = MongoStore.connect(mongodb_uri, f"ledger_schema_{uuid.uuid4().hex[:8]}")
    try:
        await store.ensure_schema()
        processor = BatchProcessor(store, Recorder(), max_event_bytes=1 << 20)
        for n in (1, 2):
            await processor.process([generated("c-1", "c-1.copy", f"c-1.copy.v{n}").record])
        stored = await store.db.campaigns.find_one({"_id": "c-1"})
        assert stored is not None
        # The earlier layout: the entity alone, the snapshot (the brief in its private part)
        # apart, and tombstones among the snapshots, one of a purge cut short.
        state = {k: stored[k] for k in CAMPAIGN_STATE_FIELDS if k in stored}
        legacy = {
            "_id": "c-1",
            "campaign_id": "c-1",
            "tombstone": False,
            "revision": 2,
            **state,
            "private": {**state["private"], "brief": stored["brief"]},
        }
        await store.db.campaigns.update_one(
            {"_id": "c-1"}, {"$unset": dict.fromkeys(CAMPAIGN_STATE_FIELDS, "")}
        )
        purged_at = datetime(2026, 11, 1, tzinfo=UTC)
        await store.db.campaigns.insert_one({**stored, "_id": "c-3", "campaign_id": "c-3"})
        await store.db[LEGACY_SNAPSHOTS].insert_many(
            [
                legacy,
                {"_id": "c-2", "campaign_id": "c-2", "tombstone": True, "purge_pending": False,
                 "revision": 5, "purged_at": purged_at},
                {"_id": "c-3", "campaign_id": "c-3", "tombstone": True, "purge_pending": True,
                 "revision": 2, "purged_at": purged_at},
            ]
        )  # fmt: skip

        published = Recorder()
        restarted = BatchProcessor(store, published, max_event_bytes=1 << 20)
        await store.ensure_schema()
        assert await store.db[LEGACY_SNAPSHOTS].count_documents({}) == 0
        moved = await store.db.campaigns.find_one({"_id": "c-1"})
        assert moved is not None and moved["private"] == stored["private"]
        assert {k: moved[k] for k in state} == state
        tombstones = await store.db[TOMBSTONES].find({}, sort=[("_id", 1)]).to_list()
        assert [(t["_id"], t["revision"], t["purge_pending"]) for t in tombstones] == [
            ("c-2", 5, False),
            ("c-3", 2, True),
        ]
        purging = await store.db.campaigns.find_one({"_id": "c-3"})
        assert purging is not None and purging["purge_pending"] is True

        await restarted.process([generated("c-1", "c-1.copy", "c-1.copy.v3").record])
        await restarted.process([generated("c-2", "c-2.copy", "c-2.copy.v1").record])
        # (revision 2 may go out again: its published mark may not have been written yet)
        assert published.revisions()[-2:] == [3, 6]
        after = await store.db.campaigns.find_one({"_id": "c-1"})
        assert after is not None
        assert after["snapshot"]["artifacts"][0]["version_count"] == 3
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()
