"""Reads for reviewers: one version with its content, the version before it, its feedback.

Every query names the campaign, the shard key, so each goes to one shard and is served by an
index of `mongo_schema` (`_id`, or `(campaign_id, artifact_id, version_number)`, or
`(campaign_id, version_id, attempt)`).
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from service.adapters import mongo_schema as cols

Document = dict[str, Any]


class ReviewReads:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db

    async def version(self, campaign_id: str, version_id: str) -> Document | None:
        """The version document with its content, only when it is that campaign's."""
        return await self.db[cols.VERSIONS].find_one(
            {"_id": version_id, "campaign_id": campaign_id}, {"source_event": 0}
        )

    async def numbered(
        self, campaign_id: str, artifact_id: str, version_number: int
    ) -> Document | None:
        return await self.db[cols.VERSIONS].find_one(
            {
                "campaign_id": campaign_id,
                "artifact_id": artifact_id,
                "version_number": version_number,
            },
            {"source_event": 0},
        )

    async def latest_audit(self, campaign_id: str, version_id: str) -> Document | None:
        return await self.db[cols.AUDIT_REPORTS].find_one(
            {"campaign_id": campaign_id, "version_id": version_id},
            {"source_event": 0},
            sort=[("attempt", -1)],
        )

    async def feedback(
        self, campaign_id: str, feedback_id: str | None, about_version_id: str
    ) -> list[Document]:
        """The feedback that led to a version: the iteration log of its `feedback_id` when it
        names one, else the feedback given on the version it was made from."""
        query: Document = {"campaign_id": campaign_id}
        if feedback_id is not None:
            query["feedback_id"] = feedback_id
        else:
            query["version_id"] = about_version_id
        cursor = self.db[cols.ITERATION_LOGS].find(
            query, {"source_event": 0}, sort=[("submitted_at", 1), ("_id", 1)], limit=50
        )
        return await cursor.to_list()
