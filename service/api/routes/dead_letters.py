"""GET /dead-letters/recent: the dead letters of the last hour (for the console)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Response

from service.api.common import json_response
from service.app.streams import RecentDeadLetters


def router(dead_letters: RecentDeadLetters) -> APIRouter:
    api = APIRouter(tags=["dead letters"])

    @api.get(
        "/dead-letters/recent",
        summary="Dead letters published in the last hour (newest first, at most 500), "
        "without their original values",
    )
    async def recent_dead_letters() -> Response:
        items = [
            {
                **item.data,
                "published_at": datetime.fromtimestamp(item.received_at, UTC)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z"),
            }
            for item in reversed(dead_letters.recent())
        ]
        return json_response({"items": items})

    return api
