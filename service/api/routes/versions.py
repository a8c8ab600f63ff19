"""GET /campaigns/{id}/artifacts/{artifact_id}/versions: an artifact's versions, paged."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel

from service.adapters.mongo_reads import MongoReads
from service.api.common import (
    BAD_REQUEST,
    NOT_FOUND,
    ArtifactId,
    CampaignId,
    json_response,
    page_after,
)
from service.domain.state import iso


class VersionItem(BaseModel):
    version_id: str
    version_number: int
    iteration: int
    created_at: str
    audit_state: str
    audit_attempts: int
    archived: bool
    approved: bool
    run_id: str | None
    parent_version_id: str | None
    feedback_id: str | None


class VersionPage(BaseModel):
    items: list[VersionItem]
    next: str | None


def version_item(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "version_id": doc["_id"],
        "version_number": doc["version_number"],
        "iteration": doc["version_number"],
        "created_at": iso(doc["created_at"]),
        "audit_state": doc["audit_state"],
        "audit_attempts": doc["audit_attempts"],
        "archived": doc["archived"],
        "approved": doc["approved"],
        "run_id": doc.get("run_id"),
        "parent_version_id": doc.get("parent_version_id"),
        "feedback_id": doc.get("feedback_id"),
    }


def router(reads: MongoReads) -> APIRouter:
    api = APIRouter(tags=["versions"])

    @api.get(
        "/campaigns/{campaign_id}/artifacts/{artifact_id}/versions",
        response_model=VersionPage,
        responses={**BAD_REQUEST, **NOT_FOUND},
        summary="An artifact's versions, oldest first, a page at a time",
    )
    async def get_versions(
        campaign_id: CampaignId,
        artifact_id: ArtifactId,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        after: Annotated[
            str | None, Query(max_length=32, description="`next` of the page before")
        ] = None,
    ) -> Response:
        start = page_after(after)
        if await reads.artifact(campaign_id, artifact_id) is None:
            raise HTTPException(404, f"campaign {campaign_id} has no artifact {artifact_id}")
        docs = await reads.version_page(campaign_id, artifact_id, start, limit + 1)
        items = [version_item(d) for d in docs[:limit]]
        more = len(docs) > limit
        return json_response(
            {"items": items, "next": str(items[-1]["version_number"]) if more else None}
        )

    return api
