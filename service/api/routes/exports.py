"""GET /campaigns/{id}/export: every document of the campaign, streamed (backup)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from service.adapters.mongo_reads import MongoReads
from service.api.common import NOT_FOUND, CampaignId, unknown_campaign
from service.app.export import CampaignNotFound, export_campaign


def router(reads: MongoReads) -> APIRouter:
    api = APIRouter(tags=["exports"])

    @api.get(
        "/campaigns/{campaign_id}/export",
        responses=NOT_FOUND,
        summary="Every document of the campaign as one JSON object (backup)",
    )
    async def get_export(campaign_id: CampaignId) -> StreamingResponse:
        try:
            document = await export_campaign(reads, campaign_id)
        except CampaignNotFound:
            raise unknown_campaign(campaign_id) from None
        return StreamingResponse(
            document,
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="{campaign_id}.json"'},
        )

    return api
