"""The HTTP read API (contract: HTTP). Reads only: every write comes through Kafka."""

from __future__ import annotations

import base64
import hmac
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from service.adapters.mongo_schema import ENTITY_COLLECTIONS
from service.adapters.mongo_store import MongoStore
from service.app import telemetry
from service.domain.events import ID_PATTERN, CampaignSnapshot
from service.domain.state import iso

CampaignId = Annotated[str, Path(pattern=ID_PATTERN, description="The campaign id.")]
ArtifactId = Annotated[str, Path(pattern=ID_PATTERN, description="The artifact id.")]
VersionId = Annotated[str, Path(pattern=ID_PATTERN, description="The version id.")]


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(type(value).__name__)


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=orjson.OPT_PASSTHROUGH_DATETIME)


def json_response(value: Any, status_code: int = 200, **headers: str) -> Response:
    return Response(dumps(value), status_code, headers, media_type="application/json")


class Problem(BaseModel):
    detail: str


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


class IterationPage(BaseModel):
    items: list[dict[str, Any]]
    next: str | None


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


class Health:
    """Readiness: false until consuming starts and from the first moment of a stop."""

    def __init__(self, store: MongoStore, kafka_ping: Callable[[], Awaitable[bool]]) -> None:
        self.store = store
        self.kafka_ping = kafka_ping
        self.started = False
        self.stopping = False

    async def ready(self) -> tuple[bool, dict[str, bool]]:
        checks = {
            "consuming": self.started and not self.stopping,
            "mongodb": await self.store.ping(),
            "kafka": await self.kafka_ping(),
        }
        return all(checks.values()), checks


def bearer_guard(tokens: tuple[str, ...]) -> Callable[[Request], None]:
    encoded = [t.encode("utf-8") for t in tokens]

    def guard(request: Request) -> None:
        if not encoded:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        candidate = given.strip().encode("utf-8")
        # Compare with every token, always: the time taken says nothing about which matched.
        matched = False
        for token in encoded:
            matched |= hmac.compare_digest(candidate, token)
        if scheme.lower() != "bearer" or not matched:
            raise HTTPException(
                401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"}
            )

    return guard


def _page_after(after: str | None) -> int:
    if after is None or after == "":
        return 0
    if not re.fullmatch(r"[0-9]{1,18}", after):
        raise HTTPException(400, "after: not a cursor this API returned")
    return int(after)


def _iteration_cursor(after: str | None) -> tuple[datetime, str] | None:
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


def _version_item(doc: dict[str, Any]) -> dict[str, Any]:
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


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem}}


def build_api(  # noqa: PLR0915 - one nested function per route
    store: MongoStore,
    health: Health,
    tokens: tuple[str, ...],
    asyncapi: Callable[[], dict[str, Any]],
    lifespan: Any = None,
) -> FastAPI:
    app = FastAPI(
        title="campaign-ledger",
        version="0.1.0",
        description="Read API of the campaign ledger: snapshots, version history, audit "
        "lineage, iteration logs, metrics and exports.",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    guarded = APIRouter(dependencies=[Depends(bearer_guard(tokens))])

    async def snapshot_of(campaign_id: str) -> dict[str, Any]:
        doc = await store.snapshot_document(campaign_id)
        if doc is None:
            raise HTTPException(404, f"campaign {campaign_id} is not known")
        return doc

    @guarded.get(
        "/campaigns/{campaign_id}/snapshot",
        response_model=CampaignSnapshot,
        responses={**NOT_FOUND, 410: {"model": Problem}},
        summary="The campaign's current snapshot, with the revision last published",
    )
    async def get_snapshot(campaign_id: CampaignId) -> Response:
        started = time.perf_counter()
        snapshot = (await snapshot_of(campaign_id))["snapshot"]
        if snapshot["deleted"]:
            raise HTTPException(410, f"campaign {campaign_id} is deleted; it can be restored")
        telemetry.observe_snapshot(snapshot, time.perf_counter() - started)
        return json_response(snapshot, ETag=f'"{snapshot["revision"]}"')

    @guarded.get(
        "/campaigns/{campaign_id}/artifacts/{artifact_id}/versions",
        response_model=VersionPage,
        responses=NOT_FOUND,
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
        start = _page_after(after)
        if await store.artifact(campaign_id, artifact_id) is None:
            raise HTTPException(404, f"campaign {campaign_id} has no artifact {artifact_id}")
        docs = await store.version_page(artifact_id, start, limit + 1)
        items = [_version_item(d) for d in docs[:limit]]
        more = len(docs) > limit
        return json_response(
            {"items": items, "next": str(items[-1]["version_number"]) if more else None}
        )

    @guarded.get(
        "/versions/{version_id}/audits",
        responses=NOT_FOUND,
        summary="The audit lineage of a version, attempt 1 first",
    )
    async def get_audits(version_id: VersionId) -> Response:
        version = await store.version(version_id)
        if version is None:
            raise HTTPException(404, f"version {version_id} is not known")
        reports = await store.audits(version_id)
        return json_response(
            {
                "version_id": version_id,
                "campaign_id": version["campaign_id"],
                "artifact_id": version["artifact_id"],
                "audit_state": version["audit_state"],
                "items": [_public(r) for r in reports],
            }
        )

    @guarded.get(
        "/campaigns/{campaign_id}/iterations",
        response_model=IterationPage,
        responses=NOT_FOUND,
        summary="Iteration logs, oldest first: the version, its feedback, the versions after",
    )
    async def get_iterations(
        campaign_id: CampaignId,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        after: Annotated[str | None, Query(max_length=200)] = None,
    ) -> Response:
        start = _iteration_cursor(after)
        await snapshot_of(campaign_id)
        logs = await store.iteration_page(campaign_id, start, limit + 1)
        page = logs[:limit]
        following = await store.versions_following(
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
            item = _public(log)
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

    @guarded.get(
        "/campaigns/{campaign_id}/metrics",
        response_model=CampaignMetrics,
        responses=NOT_FOUND,
        summary="Versions per artifact, audit reports, iteration count, audit pass rate",
    )
    async def get_metrics(campaign_id: CampaignId) -> Response:
        doc = await snapshot_of(campaign_id)
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

    @guarded.get(
        "/campaigns/{campaign_id}/export",
        responses=NOT_FOUND,
        summary="Every document of the campaign as one JSON object (backup)",
    )
    async def get_export(campaign_id: CampaignId) -> StreamingResponse:
        await snapshot_of(campaign_id)
        return StreamingResponse(
            _export_stream(store, campaign_id),
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="{campaign_id}.json"'},
        )

    @guarded.get("/campaigns", summary="Campaigns not deleted, by id, a page at a time")
    async def list_campaigns(
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        after: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    ) -> Response:
        docs = await store.campaign_page(after or "", limit + 1)
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

    @guarded.get("/openapi.json", include_in_schema=False)
    async def get_openapi() -> Response:
        return json_response(app.openapi())

    @guarded.get("/asyncapi.json", include_in_schema=False)
    async def get_asyncapi() -> Response:
        return json_response(asyncapi())

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        ready, checks = await health.ready()
        return json_response({"ready": ready, "checks": checks}, 200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(guarded)
    return app


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored record as the API shows it: its id under its own name, no internals."""
    item = {k: v for k, v in doc.items() if k not in {"_id", "source_event"}}
    item["id"] = doc["_id"]
    return item


async def _export_stream(store: MongoStore, campaign_id: str) -> AsyncIterator[bytes]:
    """{"campaign_id": …, "campaigns": […], "artifacts": […], …}, written as it is read."""
    yield b'{"campaign_id":' + dumps(campaign_id)
    for collection in ENTITY_COLLECTIONS:
        yield b"," + dumps(collection) + b":["
        separator = b""
        async for doc in store.export(collection, campaign_id):
            yield separator + dumps(doc)
            separator = b","
        yield b"]"
    yield b"}"
