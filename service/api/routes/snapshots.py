"""GET /campaigns/{id}/snapshot: the campaign's current snapshot (ETag: its revision)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Response

from service.api.common import GONE, NOT_FOUND, CampaignId, unknown_campaign
from service.app import telemetry
from service.app.streams import SnapshotReader
from service.domain.events import CampaignSnapshot


def etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 weak comparison against a list of entity tags (or `*`)."""
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def router(reader: SnapshotReader) -> APIRouter:
    api = APIRouter(tags=["snapshots"])

    @api.get(
        "/campaigns/{campaign_id}/snapshot",
        response_model=CampaignSnapshot,
        responses={
            **NOT_FOUND,
            **GONE,
            304: {"description": "`If-None-Match` names the current revision's ETag"},
        },
        summary="The campaign's current snapshot, with the revision last published",
    )
    async def get_snapshot(
        campaign_id: CampaignId,
        if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
    ) -> Response:
        started = time.perf_counter()
        snapshot = await reader.current(campaign_id)
        if snapshot is None:
            raise unknown_campaign(campaign_id)
        if snapshot.deleted:
            raise HTTPException(410, f"campaign {campaign_id} is deleted; it can be restored")
        telemetry.observe_snapshot(
            {"counts": {"versions": snapshot.versions, "audit_reports": snapshot.audit_reports}},
            time.perf_counter() - started,
        )
        headers = {"ETag": snapshot.etag, "Cache-Control": "no-cache"}
        if if_none_match is not None and etag_matches(if_none_match, snapshot.etag):
            return Response(status_code=304, headers=headers)
        return Response(snapshot.body, headers=headers, media_type="application/json")

    return api
