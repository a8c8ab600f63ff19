"""GET /campaigns/{id}/iterations: iteration logs with the versions that followed them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from service.adapters.mongo_reads import MongoReads
from service.api.common import (
    BAD_REQUEST,
    NOT_FOUND,
    CampaignId,
    iteration_cursor,
    json_response,
    public,
    unknown_campaign,
)


class IterationPage(BaseModel):
    items: list[dict[str, Any]]
    next: str | None


def router(reads: MongoReads) -> APIRouter:
    api = APIRouter(tags=["iterations"])

    @api.get(
        "/campaigns/{campaign_id}/iterations",
        response_model=IterationPage,
        responses={**BAD_REQUEST, **NOT_FOUND},
        summary="Iteration logs, oldest first: the version, its feedback, the versions after",
    )
    async def get_iterations(
        campaign_id: CampaignId,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        after: Annotated[str | None, Query(max_length=200)] = None,
    ) -> Response:
        start = iteration_cursor(after)
        if await reads.snapshot_document(campaign_id) is None:
            raise unknown_campaign(campaign_id)
        logs = await reads.iteration_page(campaign_id, start, limit + 1)
        page = logs[:limit]
        following = await reads.versions_following(
            [log["feedback_id"] for log in page], [log["version_id"] for log in page]
        )
        items = []
        for log in page:
            by_feedback = [v for v in following if v.get("feedback_id") == log["feedback_id"]]
            by_parent = [
                v
                for v in following
                if v.get("parent_version_id") == log["version_id"] and not v.get("feedback_id")
            ]
            item = public(log)
            item["resulting_versions"] = [
                {"version_id": v["version_id"], "version_number": v["version_number"]}
                for v in (by_feedback or by_parent)
            ]
            items.append(item)
        more = len(logs) > limit
        cursor = None
        if more:
            last = page[-1]
            cursor = f"{int(last['submitted_at'].timestamp() * 1000)}.{last['_id']}"
        return json_response({"items": items, "next": cursor})

    return api
