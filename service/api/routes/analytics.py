"""GET /analytics/iterations: iteration figures across campaigns, per artifact type."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, Field

from service.adapters.mongo_analytics import TooSlow
from service.api.common import Problem
from service.api.routes.reviewing import NO_CACHE
from service.app.analytics import IterationAnalytics
from service.app.export import dumps
from service.domain.iteration_metrics import __doc__ as DEFINITIONS

ARTIFACT_TYPE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class ScoreChange(BaseModel):
    mean: float
    rounds: int


class RoundChanges(BaseModel):
    round: int = Field(description="Round r made version r + 1")
    categories: dict[str, ScoreChange]


class PassCount(BaseModel):
    versions: int
    artifacts: int


class Totals(BaseModel):
    artifacts: int
    versions: int
    artifacts_passed: int
    mean_versions_to_first_pass: float | None
    first_versions_judged: int
    first_pass_rate: float | None
    artifacts_approved: int
    mean_seconds_to_approval: float | None


class WeekFigures(Totals):
    week: str = Field(description="Monday (UTC) of the week of the artifacts' first versions")


class TypeFigures(Totals):
    artifact_type: str
    p90_versions_to_first_pass: int | None
    versions_to_first_pass: list[PassCount]
    score_change_per_round: dict[str, ScoreChange]
    score_change_by_round: list[RoundChanges]
    by_week: list[WeekFigures]


class IterationFigures(BaseModel):
    since: str | None
    until: str | None
    artifact_type: str | None
    computed_at: str
    compute_seconds: float
    types: list[TypeFigures]


def moment(name: str, value: str | None) -> datetime | None:
    """RFC 3339 with a zone, or a date (its midnight UTC)."""
    if value is None or value == "":
        return None
    text = value.strip()
    parsed: datetime | None = None
    try:
        if _DATE.fullmatch(text):
            return datetime.combine(date.fromisoformat(text), time(), UTC)
        if "T" in text.upper() and len(text) <= 40:
            parsed = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None:
        raise HTTPException(
            400,
            f"{name}: {value!r} is not a date (2026-11-30) or an RFC 3339 time "
            "(2026-11-30T08:00:00Z)",
        )
    if parsed.tzinfo is None:
        raise HTTPException(400, f"{name}: {value!r} has no time zone (add Z or an offset)")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise HTTPException(400, f"{name}: {value!r} is outside years 1 to 9999 in UTC") from None


def router(analytics: IterationAnalytics) -> APIRouter:
    api = APIRouter(tags=["analytics"])

    @api.get(
        "/analytics/iterations",
        response_model=IterationFigures,
        responses={
            400: {"model": Problem, "description": "A bad date, window or artifact type"},
            503: {"model": Problem, "description": "The aggregation ran out of time"},
        },
        summary="Across campaigns, per artifact type: how many rounds it takes to pass",
        description=(DEFINITIONS or "")
        + "\nComputed by one aggregation over every campaign (scatter-gather on a sharded "
        "cluster); an answer is reused for ANALYTICS_CACHE_SECONDS.",
    )
    async def get_iterations(
        since: Annotated[
            str | None, Query(description="Start, inclusive: a date or an RFC 3339 time")
        ] = None,
        until: Annotated[
            str | None, Query(description="End, exclusive: a date or an RFC 3339 time")
        ] = None,
        artifact_type: Annotated[
            str | None, Query(description="Only this type (lower snake case)")
        ] = None,
    ) -> Response:
        start, end = moment("since", since), moment("until", until)
        if start is not None and end is not None and start >= end:
            raise HTTPException(400, f"since ({since}) must come before until ({until})")
        if artifact_type is not None and (
            len(artifact_type) > 64 or not ARTIFACT_TYPE.fullmatch(artifact_type)
        ):
            raise HTTPException(
                400,
                f"artifact_type: {artifact_type!r} is not an artifact type "
                "(lower snake case, such as copy or visual_concept)",
            )
        try:
            body: dict[str, Any] = await analytics.answer((start, end, artifact_type))
        except TooSlow as error:
            raise HTTPException(503, str(error), {"Retry-After": "30"}) from None
        return Response(dumps(body), headers=NO_CACHE, media_type="application/json")

    return api
