"""The HTTP API's MongoDB reads: each one a bounded query served by an index.

Writes (the batch's transaction, the outbox, purges) stay in `mongo_store`; this module only
reads, outside transactions, so the API never waits on a batch.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from service.adapters import mongo_schema as cols

Document = dict[str, Any]


class MongoReads:
    """Reads for the HTTP API and the export, on the database the store writes."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db

    async def snapshot_document(self, campaign_id: str) -> Document | None:
        return await self.db[cols.CAMPAIGNS].find_one(
            {"_id": campaign_id, "purge_pending": {"$ne": True}},
            {"snapshot": 1, "private.audit_outcomes": 1},
        )

    async def artifact(self, campaign_id: str, artifact_id: str) -> Document | None:
        return await self.db[cols.ARTIFACTS].find_one(
            {"_id": artifact_id, "campaign_id": campaign_id}
        )

    async def version_page(
        self, campaign_id: str, artifact_id: str, after: int, limit: int
    ) -> list[Document]:
        # Campaign first: one shard, and the unique (campaign_id, artifact_id, version_number)
        # index serves the page.
        cursor = self.db[cols.VERSIONS].find(
            {
                "campaign_id": campaign_id,
                "artifact_id": artifact_id,
                "version_number": {"$gt": after},
            },
            {"content": 0},
            sort=[("version_number", 1)],
            limit=limit,
        )
        return await cursor.to_list()

    async def version(self, version_id: str, campaign_id: str | None = None) -> Document | None:
        """A version without its content; with `campaign_id`, only when it is that campaign's
        (the query then carries the shard key and goes to one shard)."""
        query: Document = {"_id": version_id}
        if campaign_id is not None:
            query["campaign_id"] = campaign_id
        return await self.db[cols.VERSIONS].find_one(query, {"content": 0})

    async def audits(self, version_id: str, campaign_id: str | None = None) -> list[Document]:
        query: Document = {"version_id": version_id}
        if campaign_id is not None:
            query = {"campaign_id": campaign_id, **query}
        cursor = self.db[cols.AUDIT_REPORTS].find(query, sort=[("attempt", 1)])
        return await cursor.to_list()

    async def iteration_page(
        self, campaign_id: str, after: tuple[datetime, str] | None, limit: int
    ) -> list[Document]:
        """Iteration logs oldest first (by submission time, then id), after a cursor."""
        query: Document = {"campaign_id": campaign_id}
        if after is not None:
            at, log_id = after
            query["$or"] = [
                {"submitted_at": {"$gt": at}},
                {"submitted_at": at, "_id": {"$gt": log_id}},
            ]
        cursor = self.db[cols.ITERATION_LOGS].find(
            query, sort=[("submitted_at", 1), ("_id", 1)], limit=limit
        )
        return await cursor.to_list()

    async def versions_following(
        self, feedback_ids: list[str], version_ids: list[str]
    ) -> list[Document]:
        """Versions generated from these feedback events or from these versions."""
        cursor = self.db[cols.VERSIONS].find(
            {
                "$or": [
                    {"feedback_id": {"$in": feedback_ids}},
                    {"parent_version_id": {"$in": version_ids}},
                ]
            },
            {
                "version_id": 1,
                "version_number": 1,
                "feedback_id": 1,
                "parent_version_id": 1,
                "created_at": 1,
            },
            sort=[("version_number", 1)],
        )
        return await cursor.to_list()

    async def export(self, collection: str, campaign_id: str) -> AsyncIterator[Document]:
        """Every document of a campaign in one entity collection, streamed."""
        if collection == cols.VERSIONS:  # artifact by artifact: served by the history index
            for artifact_id in await self.artifact_ids(campaign_id):
                cursor = self.db[cols.VERSIONS].find(
                    {"campaign_id": campaign_id, "artifact_id": artifact_id},
                    sort=[("version_number", 1)],
                )
                async for doc in cursor:
                    yield doc
            return
        if collection == cols.CAMPAIGNS:  # the entity, not the service's state beside it
            query, projection = {"_id": campaign_id}, cols.CAMPAIGN_ENTITY_ONLY
        else:
            query, projection = {"campaign_id": campaign_id}, None
        async for doc in self.db[collection].find(query, projection, sort=[("_id", 1)]):
            yield doc

    async def artifact_ids(self, campaign_id: str) -> list[str]:
        cursor = self.db[cols.ARTIFACTS].find(
            {"campaign_id": campaign_id}, {"_id": 1}, sort=[("_id", 1)]
        )
        return [doc["_id"] for doc in await cursor.to_list()]

    async def campaign_page(self, after: str, limit: int) -> list[Document]:
        cursor = self.db[cols.CAMPAIGNS].find(
            {"_id": {"$gt": after}, "deleted": False},
            {"name": 1, "status": 1, "created_at": 1, "updated_at": 1, "revision": 1},
            sort=[("_id", 1)],
            limit=limit,
        )
        return await cursor.to_list()

    async def snapshot_revision(self, campaign_id: str) -> int | None:
        """Only the stored revision: a tiny read that tells whether a cached copy is current."""
        doc = await self.db[cols.CAMPAIGNS].find_one(
            {"_id": campaign_id, "purge_pending": {"$ne": True}}, {"revision": 1}
        )
        return None if doc is None else int(doc["revision"])
