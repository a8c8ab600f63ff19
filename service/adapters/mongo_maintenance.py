"""The maintenance queries: held events that waited too long, and purges after retention."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from service.adapters import mongo_schema as cols
from service.adapters.mongo_documents import mark_document
from service.adapters.mongo_errors import DUPLICATE_KEY
from service.adapters.mongo_store import MongoStore, Transaction
from service.domain.ledger import made_by

Document = dict[str, Any]


class MongoMaintenance:
    def __init__(self, store: MongoStore) -> None:
        self.store = store
        self.db = store.db

    async def claim_expired_holds(self, before: datetime, limit: int) -> list[Document]:
        """Mark held events older than `before` as expired, so no batch attaches them now.

        The marking runs in a transaction: a batch that is attaching one of them at the same
        moment conflicts with it, and exactly one of the two wins.
        """
        return await self.store.in_transaction(lambda tx: _claim(tx, before, limit))

    async def count_held(self) -> int:
        return await self.db[cols.HELD_EVENTS].estimated_document_count()

    async def oldest_held_at(self) -> datetime | None:
        """When the longest-waiting held event was held (for its alert), None if none."""
        doc = await self.db[cols.HELD_EVENTS].find_one(
            {"expired": {"$ne": True}}, {"held_at": 1}, sort=[("held_at", 1)]
        )
        return None if doc is None else doc["held_at"]

    async def drop_held(self, ids: list[str]) -> None:
        await self.db[cols.HELD_EVENTS].delete_many({"_id": {"$in": ids}, "expired": True})

    async def campaigns_to_purge(self, before: datetime, limit: int) -> list[str]:
        """Campaigns deleted (as the service saw it) before `before`, or purges cut short."""
        due = {"$or": [{"deletion_noted_at": {"$lt": before}}, {"purge_pending": True}]}
        found = await self.db[cols.CAMPAIGNS].find(due, {"_id": 1}, limit=limit).to_list()
        if len(found) < limit:
            found += await (
                self.db[cols.TOMBSTONES]
                .find({"purge_pending": True}, {"_id": 1}, limit=limit - len(found))
                .to_list()
            )
        return list(dict.fromkeys(d["_id"] for d in found))

    async def purge_campaign(self, campaign_id: str, deleted_before: datetime) -> bool:
        """Delete every document of a campaign deleted since before `deleted_before`.

        The retention runs from when the service applied the delete, not from the event's
        own time: a delete replayed or delayed past the retention must still leave its
        restore, right behind it, something to restore.

        First, in one transaction, the campaign document is marked as being purged and a
        tombstone is written: a restore being applied at that moment conflicts with it, and
        only one of the two happens. The tombstone keeps the last revision (a campaign id
        used again goes on from it, so no revision number is published twice) and marks the
        purge pending until the documents are gone, so a purge cut short is finished by the
        next sweep. Processed-event marks stay: a replay of the campaign's old events must
        not bring it back.
        """
        claimed = await self.store.in_transaction(
            lambda tx: _claim_purge(tx, campaign_id, deleted_before)
        )
        if not claimed:
            return False  # restored meanwhile, or purged already
        await self._keep_version_marks(campaign_id)
        for name in (
            cols.VERSIONS,
            cols.AUDIT_REPORTS,
            cols.ITERATION_LOGS,
            cols.ARTIFACTS,
            cols.RUNS,
            cols.HELD_EVENTS,
            cols.OUTBOX,
            cols.CAMPAIGNS,
        ):
            key = "_id" if name == cols.CAMPAIGNS else "campaign_id"
            await self.db[name].delete_many({key: campaign_id})
        await self.db[cols.TOMBSTONES].update_one(
            {"_id": campaign_id}, {"$set": {"purge_pending": False}}
        )
        return True

    async def _keep_version_marks(self, campaign_id: str) -> None:
        """A version is the processed mark of the event that made it (see the rules): before
        the versions go, their marks move to processed_events, so that a replay of the
        campaign's old events stays a duplicate. Repeatable: a purge cut short runs it again."""
        marks = self.db[cols.PROCESSED_EVENTS]
        cursor = self.db[cols.VERSIONS].find({"campaign_id": campaign_id}, {"source_event": 1})
        batch: list[Document] = []
        async for doc in cursor:
            if key := made_by(doc):
                batch.append(mark_document(key, campaign_id))
            if len(batch) == 1000:
                await _insert_new(marks, batch)
                batch = []
        await _insert_new(marks, batch)


async def _claim(tx: Transaction, before: datetime, limit: int) -> list[Document]:
    held = tx.db[cols.HELD_EVENTS]
    cursor = held.find(
        {"held_at": {"$lt": before}}, sort=[("held_at", 1)], limit=limit, session=tx.session
    )
    found = await cursor.to_list()
    if found:
        ids = [d["_id"] for d in found]
        await held.update_many(
            {"_id": {"$in": ids}}, {"$set": {"expired": True}}, session=tx.session
        )
        # An expired hold was never applied: forget its mark too, so the same event sent
        # again (a dead-letter replay, a producer retry) is applied as new.
        await tx.db[cols.PROCESSED_EVENTS].delete_many({"_id": {"$in": ids}}, session=tx.session)
    return found


async def _claim_purge(tx: Transaction, campaign_id: str, deleted_before: datetime) -> bool:
    """Whether the campaign is to be purged now: its document, deleted long enough ago, is
    marked as being purged beside a tombstone, or a purge cut short left its tombstone."""
    campaigns, tombstones = tx.db[cols.CAMPAIGNS], tx.db[cols.TOMBSTONES]
    doc = await campaigns.find_one_and_update(
        {
            "_id": campaign_id,
            "$or": [{"deletion_noted_at": {"$lt": deleted_before}}, {"purge_pending": True}],
        },
        {"$set": {"purge_pending": True, "purged_at": deleted_before}},
        projection={"revision": 1},
        session=tx.session,
    )
    if doc is None:
        pending = {"_id": campaign_id, "purge_pending": True}
        return await tombstones.find_one(pending, {"_id": 1}, session=tx.session) is not None
    tombstone = {
        "campaign_id": campaign_id,
        "revision": doc["revision"],
        "purged_at": deleted_before,
        "purge_pending": True,
    }
    await tombstones.replace_one({"_id": campaign_id}, tombstone, upsert=True, session=tx.session)
    return True


async def _insert_new(collection: AsyncCollection[Document], docs: list[Document]) -> None:
    """Insert the documents whose `_id` is not stored yet; the others are already there."""
    if not docs:
        return
    try:
        await collection.insert_many(docs, ordered=False)
    except BulkWriteError as error:
        if any(e["code"] != DUPLICATE_KEY for e in error.details["writeErrors"]):
            raise
