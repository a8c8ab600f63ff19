"""Sharding on `campaign_id` stays possible (the contract's "Scale-out: sharded MongoDB").

Read from the live database, not from the code's index list, so neither a new index nor a
document shape can drift from the rule unnoticed.
"""

from __future__ import annotations

import uuid
from typing import Any

from pymongo import ASCENDING, IndexModel

from service.adapters.mongo_schema import (
    AUDIT_REPORTS,
    HELD_EVENTS,
    INDEXES,
    ITERATION_LOGS,
    OUTBOX,
    PUBLISHERS,
    TOMBSTONES,
    VERSIONS,
)
from service.adapters.mongo_store import MongoStore
from tests.events import cloud_event
from tests.integration.harness import Ledger, eventually, new_id


async def unshardable_indexes(store: MongoStore) -> list[str]:
    """Every unique index other than `_id` that does not begin with `campaign_id`."""
    found = []
    for name in await store.db.list_collection_names():
        async for index in await store.db[name].list_indexes():
            keys = list(index["key"])
            if index["name"] != "_id_" and index.get("unique") and keys[0] != "campaign_id":
                found.append(f"{name}.{index['name']} {keys}")
    return found


async def test_every_unique_index_begins_with_the_shard_key(mongodb_uri: str) -> None:
    store = MongoStore.connect(mongodb_uri, f"ledger_shard_{uuid.uuid4().hex[:8]}")
    try:
        # A database made by an earlier version: its unique indexes did not begin with it.
        await store.db.versions.create_indexes(
            [IndexModel([("artifact_id", ASCENDING), ("version_number", ASCENDING)], unique=True)]
        )
        await store.db.audit_reports.create_indexes(
            [IndexModel([("version_id", ASCENDING), ("attempt", ASCENDING)], unique=True)]
        )
        assert len(await unshardable_indexes(store)) == 2  # the check can fail
        await store.ensure_schema()
        assert set(INDEXES) <= set(await store.db.list_collection_names())
        assert await unshardable_indexes(store) == []
        unique = {
            name: [
                list(i["key"]) async for i in await store.db[name].list_indexes() if i.get("unique")
            ]
            for name in (VERSIONS, AUDIT_REPORTS, ITERATION_LOGS)
        }
        # The guarantees they back are still enforced (ids are global, so the same tuples).
        assert unique == {
            "versions": [["campaign_id", "artifact_id", "version_number"]],
            "audit_reports": [["campaign_id", "version_id", "attempt"]],
            "iteration_logs": [["campaign_id", "version_id", "feedback_number"]],
        }
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()


def _event(event_type: str, campaign: str, **data: Any) -> dict[str, Any]:
    return cloud_event(event_type, {"campaign_id": campaign, **data})


async def test_every_stored_document_carries_the_shard_key(ledger: Ledger) -> None:
    campaign, artifact = new_id("c"), new_id("a")
    early = new_id("v")  # audited before it exists: held, then attached
    events = [
        _event("campaign.created", campaign, name="Spring"),
        _event("campaign.run.started", campaign, run_id=new_id("r")),
        _event("campaign.audit.completed", campaign, version_id=early, outcome="pass"),
        _event(
            "campaign.artifact.generated",
            campaign,
            artifact_id=artifact,
            artifact_type="copy",
            version_id=f"{artifact}.v1",
            content={"text": "one"},
        ),
        _event(
            "campaign.feedback.submitted",
            campaign,
            artifact_id=artifact,
            version_id=f"{artifact}.v1",
            feedback_text="warmer",
        ),
        _event(
            "campaign.artifact.generated",
            campaign,
            artifact_id=artifact,
            artifact_type="copy",
            version_id=early,
            content={"text": "two"},
        ),
        _event("campaign.version.archive-requested", campaign, version_id=early),
    ]
    for event in events:
        await ledger.send(event)
    await ledger.wait_revision(campaign, 7)

    async def outbox_empty() -> bool:
        return await ledger.count("outbox") == 0

    await eventually(outbox_empty)
    missing = {}
    # One small document per service start, read by _id, never sharded (see mongo_schema).
    for name in set(INDEXES) - {PUBLISHERS}:
        count = await ledger.count(name)
        lacking = await ledger.count(name, {"campaign_id": {"$not": {"$type": "string"}}})
        if lacking:
            missing[name] = lacking
        if name not in {OUTBOX, HELD_EVENTS, TOMBSTONES}:
            assert count > 0, f"the flow left {name} empty: the check would prove nothing"
    assert missing == {}
    stored = await ledger.db.campaigns.find_one({"_id": campaign})
    assert stored is not None
    assert stored["campaign_id"] == campaign == stored["snapshot"]["campaign_id"]
