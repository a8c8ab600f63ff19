"""GET /campaigns: campaigns not deleted, by id, a page at a time."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from service.adapters.mongo_reads import MongoReads
from service.api.common import json_response
from service.domain.events import ID_PATTERN
from service.domain.state import iso


def router(reads: MongoReads) -> APIRouter:
    api = APIRouter(tags=["campaigns"])

    @api.get("/campaigns", summary="Campaigns not deleted, by id, a page at a time")
    async def list_campaigns(
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        after: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    ) -> Response:
        docs = await reads.campaign_page(after or "", limit + 1)
        items = [
            {
                "campaign_id": d["_id"],
                "name": d.get("name"),
                "status": d["status"],
                "revision": d["revision"],
                "created_at": iso(d["created_at"]),
                "updated_at": iso(d["updated_at"]),
            }
            for d in docs[:limit]
        ]
        more = len(docs) > limit
        return json_response({"items": items, "next": items[-1]["campaign_id"] if more else None})

    return api
