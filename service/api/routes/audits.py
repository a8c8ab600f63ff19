"""A version's audit lineage: by version id, or targeted at the campaign's shard."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel

from service.adapters.mongo_reads import MongoReads
from service.api.common import NOT_FOUND, CampaignId, VersionId, json_response, public


class AuditLineage(BaseModel):
    version_id: str
    campaign_id: str
    artifact_id: str
    audit_state: str
    items: list[dict[str, Any]]


def router(reads: MongoReads) -> APIRouter:
    api = APIRouter(tags=["audits"])

    async def lineage(version_id: str, campaign_id: str | None) -> Response:
        version = await reads.version(version_id, campaign_id)
        if version is None:
            where = f" in campaign {campaign_id}" if campaign_id else ""
            raise HTTPException(404, f"version {version_id} is not known{where}")
        reports = await reads.audits(version_id, version["campaign_id"])
        return json_response(
            {
                "version_id": version_id,
                "campaign_id": version["campaign_id"],
                "artifact_id": version["artifact_id"],
                "audit_state": version["audit_state"],
                "items": [public(r) for r in reports],
            }
        )

    @api.get(
        "/versions/{version_id}/audits",
        response_model=AuditLineage,
        responses=NOT_FOUND,
        summary="The audit lineage of a version, attempt 1 first",
    )
    async def get_audits(version_id: VersionId) -> Response:
        return await lineage(version_id, None)

    @api.get(
        "/campaigns/{campaign_id}/versions/{version_id}/audits",
        response_model=AuditLineage,
        responses=NOT_FOUND,
        summary="The audit lineage of a campaign's version (one shard), attempt 1 first",
    )
    async def get_campaign_audits(campaign_id: CampaignId, version_id: VersionId) -> Response:
        return await lineage(version_id, campaign_id)

    return api
