"""A version as reviewers read it, and what changed from one version to another.

`GET /campaigns/{id}/versions/{version_id}`: the version document with its content exactly as
sent and its latest audit report. A version is append-only: its content, number, artifact,
links and creation time never change. What may change is its marks: `audit_state` and
`audit_attempts` (with them `latest_audit`), `feedback_count`, `approved` (`approved_by`,
`approved_at`) and `archived` (`archived_at`). The ETag is made of exactly those, plus a
digest of the content (a campaign purged and sent again could reuse a version id).

`GET /campaigns/{id}/versions/{version_id}/diff?against=`: the structured diff of the two
contents (`service.domain.content_diff`) and the feedback between them.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Response
from pydantic import BaseModel, Field

from service.adapters.mongo_review import ReviewReads
from service.api.common import BAD_REQUEST, NOT_FOUND, CampaignId, VersionId
from service.api.routes.snapshots import etag_matches
from service.app.export import dumps
from service.domain import content_diff
from service.domain.events import ID_PATTERN
from service.domain.state import iso

AuditState = Literal["pending", "passed", "conditional", "failed", "unaudited"]


class LatestAudit(BaseModel):
    id: str
    attempt: int
    outcome: Literal["pass", "conditional", "fail", "error"]
    audit_state: AuditState
    category_scores: dict[str, dict[str, Any]] | None
    flagged_items: list[dict[str, Any]] | None = None
    recommendations: list[dict[str, Any]] | None = None
    auditor: str | None = None
    error: str | None = None
    completed_at: str


class VersionDocument(BaseModel):
    """A version as stored. `content` is byte for byte the JSON object that was sent."""

    version_id: str
    campaign_id: str
    artifact_id: str
    artifact_type: str
    version_number: int
    created_at: str
    content: dict[str, Any]
    audit_state: AuditState
    audit_attempts: int
    feedback_count: int
    approved: bool
    approved_by: str | None = None
    approved_at: str | None = None
    archived: bool
    archived_at: str | None = None
    parent_version_id: str | None = None
    feedback_id: str | None = None
    run_id: str | None = None
    agent: str | None = None
    metadata: dict[str, Any] | None = None
    extra: dict[str, Any] = Field(default_factory=dict, description="Unknown fields sent")
    latest_audit: LatestAudit | None = Field(description="The highest attempt, or null")


class VersionRef(BaseModel):
    version_id: str
    version_number: int
    created_at: str
    audit_state: AuditState


class TextOp(BaseModel):
    op: Literal["equal", "delete", "insert"]
    text: str


class TextDiff(BaseModel):
    granularity: Literal["word", "line"]
    ops: list[TextOp] = Field(
        description="equal + delete rebuild the old string, equal + insert the new one"
    )


class ContentChange(BaseModel):
    path: str = Field(description="JSON Pointer (RFC 6901) of the changed value")
    segments: list[str | int]
    kind: Literal["added", "removed", "changed"]
    old: Any = Field(None, description="Absent when the path was added")
    new: Any = Field(None, description="Absent when the path was removed")
    text_diff: TextDiff | None = Field(None, description="Only when both values are strings")


class FeedbackItem(BaseModel):
    feedback_id: str
    version_id: str
    feedback_number: int
    feedback_text: str
    tags: list[str] | None = None
    rationale: str | None = None
    submitted_by: str | None = None
    submitted_at: str


class ChangeCounts(BaseModel):
    added: int
    removed: int
    changed: int


class VersionDiff(BaseModel):
    campaign_id: str
    artifact_id: str
    artifact_type: str
    version: VersionRef
    against: VersionRef
    against_chosen: Literal["requested", "parent", "previous"]
    counts: ChangeCounts
    changes: list[ContentChange] = Field(description="From `against` to `version`")
    feedback: list[FeedbackItem] = Field(
        description="The feedback that led from the older of the two to the newer"
    )


NO_CACHE = {"Cache-Control": "no-cache"}
MUTABLE = ("audit_state", "audit_attempts", "feedback_count", "approved", "archived")


def etag(doc: dict[str, Any]) -> str:
    marks = ".".join(str(int(doc.get(name, 0))) for name in MUTABLE[1:])
    return f'"{doc.get("content_sha256", "")[:16]}.{doc["audit_state"]}.{marks}"'


def _audit(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    if doc is None:
        return None
    return {
        "id": doc["_id"],
        "attempt": doc["attempt"],
        "outcome": doc["outcome"],
        "audit_state": doc["audit_state"],
        "category_scores": doc.get("category_scores"),
        "flagged_items": doc.get("flagged_items"),
        "recommendations": doc.get("recommendations"),
        "auditor": doc.get("auditor"),
        "error": doc.get("error"),
        "completed_at": iso(doc["completed_at"]),
    }


def version_body(doc: dict[str, Any], audit: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "version_id": doc["_id"],
        "campaign_id": doc["campaign_id"],
        "artifact_id": doc["artifact_id"],
        "artifact_type": doc["artifact_type"],
        "version_number": doc["version_number"],
        "created_at": iso(doc["created_at"]),
        "content": doc["content"],
        "audit_state": doc["audit_state"],
        "audit_attempts": doc.get("audit_attempts", 0),
        "feedback_count": doc.get("feedback_count", 0),
        "approved": doc["approved"],
        "approved_by": doc.get("approved_by"),
        "approved_at": iso(doc.get("approved_at")),
        "archived": doc["archived"],
        "archived_at": iso(doc.get("archived_at")),
        "parent_version_id": doc.get("parent_version_id"),
        "feedback_id": doc.get("feedback_id"),
        "run_id": doc.get("run_id"),
        "agent": doc.get("agent"),
        "metadata": doc.get("metadata"),
        "extra": doc.get("extra") or {},
        "latest_audit": _audit(audit),
    }


def _ref(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "version_id": doc["_id"],
        "version_number": doc["version_number"],
        "created_at": iso(doc["created_at"]),
        "audit_state": doc["audit_state"],
    }


def _feedback(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "feedback_id": doc["feedback_id"],
        "version_id": doc["version_id"],
        "feedback_number": doc["feedback_number"],
        "feedback_text": doc["feedback_text"],
        "tags": doc.get("tags"),
        "rationale": doc.get("rationale"),
        "submitted_by": doc.get("submitted_by"),
        "submitted_at": iso(doc["submitted_at"]),
    }


def not_found(campaign_id: str, version_id: str) -> HTTPException:
    return HTTPException(404, f"version {version_id} is not known in campaign {campaign_id}")


def router(reads: ReviewReads) -> APIRouter:
    api = APIRouter(tags=["reviewing"])

    @api.get(
        "/campaigns/{campaign_id}/versions/{version_id}",
        response_model=VersionDocument,
        responses={
            **NOT_FOUND,
            304: {"description": "`If-None-Match` names the current ETag"},
        },
        summary="A version as stored: its content as sent, its marks, its latest audit",
        description="The ETag changes only with the marks that may change "
        "(audit_state, audit_attempts and so latest_audit, feedback_count, approved, "
        "archived); content and links never change. One shard: the query names the campaign.",
    )
    async def get_version(
        campaign_id: CampaignId,
        version_id: VersionId,
        if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
    ) -> Response:
        doc = await reads.version(campaign_id, version_id)
        if doc is None:
            raise not_found(campaign_id, version_id)
        tag = etag(doc)
        headers = {"ETag": tag, "Cache-Control": "no-cache"}
        if if_none_match is not None and etag_matches(if_none_match, tag):
            return Response(status_code=304, headers=headers)
        audit = None
        if doc.get("audit_attempts", 0) > 0:
            audit = await reads.latest_audit(campaign_id, version_id)
        return Response(
            dumps(version_body(doc, audit)), headers=headers, media_type="application/json"
        )

    @api.get(
        "/campaigns/{campaign_id}/versions/{version_id}/diff",
        response_model=VersionDiff,
        responses={
            400: {
                "model": BAD_REQUEST[400]["model"],
                "description": "The two versions are of different artifacts",
            },
            **NOT_FOUND,
        },
        summary="What changed in the content between two versions of one artifact",
        description="`against` defaults to the version's parent (its `parent_version_id`, "
        "when that is a version of the same artifact), else the version numbered one less. "
        "404 when either version is not the campaign's, or the version has none before it.",
    )
    async def get_diff(
        campaign_id: CampaignId,
        version_id: VersionId,
        against: Annotated[
            str | None,
            Query(pattern=ID_PATTERN, description="The version to compare with"),
        ] = None,
    ) -> Response:
        doc = await reads.version(campaign_id, version_id)
        if doc is None:
            raise not_found(campaign_id, version_id)
        chosen: Literal["requested", "parent", "previous"]
        other: dict[str, Any] | None = None
        if against is not None:
            chosen = "requested"
            other = await reads.version(campaign_id, against)
            if other is None:
                raise not_found(campaign_id, against)
            if other["artifact_id"] != doc["artifact_id"]:
                raise HTTPException(
                    400,
                    f"version {against} is of artifact {other['artifact_id']}, "
                    f"version {version_id} of artifact {doc['artifact_id']}: "
                    "only versions of one artifact can be compared",
                )
        else:
            parent = doc.get("parent_version_id")
            if parent is not None and parent != version_id:
                other = await reads.version(campaign_id, parent)
                if other is not None and other["artifact_id"] != doc["artifact_id"]:
                    other = None
            chosen = "parent"
            if other is None:
                chosen = "previous"
                if doc["version_number"] > 1:
                    other = await reads.numbered(
                        campaign_id, doc["artifact_id"], doc["version_number"] - 1
                    )
            if other is None:
                raise HTTPException(
                    404,
                    f"version {version_id} is its artifact's first: no earlier version to "
                    "compare with (name one with ?against=)",
                )
        older, newer = sorted((other, doc), key=lambda d: d["version_number"])
        feedback: list[dict[str, Any]] = []
        if older["_id"] != newer["_id"]:
            if newer.get("feedback_id") is not None:
                feedback = await reads.feedback(campaign_id, newer["feedback_id"], older["_id"])
            made_from_id = newer.get("parent_version_id")
            made_from = (
                made_from_id == older["_id"]
                if made_from_id is not None
                else newer["version_number"] == older["version_number"] + 1
            )
            if not feedback and made_from:
                feedback = await reads.feedback(campaign_id, None, older["_id"])
        # CPU-bound for large contents (up to seconds): off the event loop, so other
        # requests and the streams keep being served meanwhile.
        changes = await asyncio.to_thread(content_diff.diff, other["content"], doc["content"])
        body = {
            "campaign_id": campaign_id,
            "artifact_id": doc["artifact_id"],
            "artifact_type": doc["artifact_type"],
            "version": _ref(doc),
            "against": _ref(other),
            "against_chosen": chosen,
            "counts": content_diff.summary(changes),
            "changes": [c.render() for c in changes],
            "feedback": [_feedback(f) for f in feedback],
        }
        return Response(dumps(body), headers=NO_CACHE, media_type="application/json")

    return api
