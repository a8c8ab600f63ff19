"""GET /campaigns/{id}/metrics: a campaign's counts and audit pass rate."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel

from service.adapters.mongo_reads import MongoReads
from service.api.common import NOT_FOUND, CampaignId, json_response, unknown_campaign


class CampaignMetrics(BaseModel):
    campaign_id: str
    revision: int
    versions: int
    versions_per_artifact: dict[str, int]
    audit_reports: int
    audit_outcomes: dict[str, int]
    audit_pass_rate: float | None
    iteration_count: int
    archived_versions: int
    approved_versions: int


def router(reads: MongoReads) -> APIRouter:
    api = APIRouter(tags=["metrics"])

    @api.get(
        "/campaigns/{campaign_id}/metrics",
        response_model=CampaignMetrics,
        responses=NOT_FOUND,
        summary="Versions per artifact, audit reports, iteration count, audit pass rate",
    )
    async def get_metrics(campaign_id: CampaignId) -> Response:
        doc = await reads.snapshot_document(campaign_id)
        if doc is None:
            raise unknown_campaign(campaign_id)
        snapshot = doc["snapshot"]
        outcomes: dict[str, int] = doc.get("private", {}).get("audit_outcomes", {})
        decided = sum(outcomes.get(k, 0) for k in ("pass", "conditional", "fail"))
        counts = snapshot["counts"]
        return json_response(
            {
                "campaign_id": campaign_id,
                "revision": snapshot["revision"],
                "versions": counts["versions"],
                "versions_per_artifact": {
                    a["artifact_id"]: a["version_count"] for a in snapshot["artifacts"]
                },
                "audit_reports": counts["audit_reports"],
                "audit_outcomes": outcomes,
                # errors are audits that could not finish, not verdicts: left out of the rate
                "audit_pass_rate": outcomes.get("pass", 0) / decided if decided else None,
                "iteration_count": counts["iteration_logs"],
                "archived_versions": counts["archived_versions"],
                "approved_versions": counts["approved_versions"],
            }
        )

    return api
