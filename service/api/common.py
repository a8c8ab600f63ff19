"""What the routers share: path parameters, JSON answers, cursors, response models."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import HTTPException, Path, Response
from pydantic import BaseModel

from service.app.export import dumps
from service.domain.events import ID_PATTERN

CampaignId = Annotated[str, Path(pattern=ID_PATTERN, description="The campaign id.")]
ArtifactId = Annotated[str, Path(pattern=ID_PATTERN, description="The artifact id.")]
VersionId = Annotated[str, Path(pattern=ID_PATTERN, description="The version id.")]


class Problem(BaseModel):
    detail: str


BAD_REQUEST: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "A cursor or parameter this API did not issue"}
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "Unknown campaign, artifact or version"}
}
GONE: dict[int | str, dict[str, Any]] = {
    410: {"model": Problem, "description": "The campaign is deleted (it can be restored)"}
}


def json_response(value: Any, status_code: int = 200, **headers: str) -> Response:
    return Response(dumps(value), status_code, headers, media_type="application/json")


def public(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored record as the API shows it: its id under its own name, no internals."""
    item = {k: v for k, v in doc.items() if k not in {"_id", "source_event"}}
    item["id"] = doc["_id"]
    return item


def page_after(after: str | None) -> int:
    if after is None or after == "":
        return 0
    if not re.fullmatch(r"[0-9]{1,18}", after):
        raise HTTPException(400, "after: not a cursor this API returned")
    return int(after)


def iteration_cursor(after: str | None) -> tuple[datetime, str] | None:
    """`next` of the iterations route: submission time (ms) and log id."""
    if not after:
        return None
    millis, _, log_id = after.partition(".")
    if not re.fullmatch(r"[0-9]{1,15}", millis) or not log_id:
        raise HTTPException(400, "after: not a cursor this API returned")
    try:
        moment = datetime.fromtimestamp(int(millis) / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        raise HTTPException(400, "after: not a cursor this API returned") from None
    return moment, log_id


def unknown_campaign(campaign_id: str) -> HTTPException:
    return HTTPException(404, f"campaign {campaign_id} is not known")
