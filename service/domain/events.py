"""The message contracts: CloudEvents envelopes and the `data` of every event type.

These pydantic models are the single source of the JSON Schemas in `schemas/` and of the
AsyncAPI document. Unknown extra fields are allowed everywhere and kept (contract: "Unknown
extra fields are kept, never an error").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    create_model,
)

ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]


def _to_millis(value: datetime) -> datetime:
    # MongoDB keeps milliseconds; normalising here keeps memory and storage equal.
    if value.tzinfo is UTC and not value.microsecond % 1000:
        return value  # UTC milliseconds already, as most times are
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        # 9999-12-31T23:59:59-05:00 is past year 9999 in UTC. A ValueError, not the
        # OverflowError, so that the event is refused with the reason instead of failing
        # its batch again and again.
        msg = "the time is out of range once converted to UTC (years 1 to 9999)"
        raise ValueError(msg) from None
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
# The forms nearly every producer writes, which the standard library reads the way pydantic
# does; read here, they validate in half the time pydantic's parsing took.
# (The standard library would read an offset's minutes past 59; pydantic refuses them.)
COMMON_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)"
)


def _read_rfc3339(value: Any) -> Any:
    if isinstance(value, str) and COMMON_RFC3339.fullmatch(value):
        try:
            return datetime.fromisoformat(value)  # normalised by `_to_millis`, after
        except ValueError:
            return value  # out of range (hour 24, 30 February): pydantic explains it
    # pydantic alone would also read numbers, digit strings and other forms as times.
    if not isinstance(value, str) or not RFC3339.match(value):
        msg = "must be an RFC 3339 date-time with a zone, e.g. 2026-03-01T12:00:00Z"
        raise ValueError(msg)
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_read_rfc3339), AfterValidator(_to_millis)]
JsonObject = dict[str, Any]


class EventType(StrEnum):
    ARTIFACT_GENERATED = "campaign.artifact.generated"
    AUDIT_COMPLETED = "campaign.audit.completed"
    FEEDBACK_SUBMITTED = "campaign.feedback.submitted"
    CAMPAIGN_CREATED = "campaign.created"
    STATUS_CHANGED = "campaign.status-changed"
    RUN_STARTED = "campaign.run.started"
    RUN_COMPLETED = "campaign.run.completed"
    VERSION_APPROVED = "campaign.version.approved"
    VERSION_ARCHIVE_REQUESTED = "campaign.version.archive-requested"
    DELETE_REQUESTED = "campaign.delete-requested"
    RESTORE_REQUESTED = "campaign.restore-requested"
    SNAPSHOT_UPDATED = "campaign.snapshot.updated"
    EVENT_REJECTED = "campaign.event.rejected"


class AuditOutcome(StrEnum):
    PASS = "pass"  # noqa: S105 - an audit outcome, not a password
    CONDITIONAL = "conditional"
    FAIL = "fail"
    ERROR = "error"


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    GENERATING = "generating"
    GENERATED = "generated"
    AUDITING = "auditing"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class _Data(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    campaign_id: Id

    @property
    def extra(self) -> JsonObject:
        return dict(self.model_extra or {})


class ArtifactGenerated(_Data):
    """A generation agent wrote a new version of an artifact."""

    artifact_id: Id
    artifact_type: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")]
    content: JsonObject
    version_id: Id | None = Field(
        default=None,
        description="When absent, derived deterministically from the event's (source, id).",
    )
    run_id: Id | None = None
    parent_version_id: Id | None = None
    feedback_id: Id | None = Field(
        default=None, description="The `id` of the feedback event that led to this version."
    )
    generated_at: Timestamp | None = None
    agent: str | JsonObject | None = None
    metadata: JsonObject | None = None


class CategoryScore(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    score: Annotated[float, Field(ge=0, le=100)]


class AuditCompleted(_Data):
    """The audit agent scored a version (one attempt)."""

    version_id: Id
    outcome: AuditOutcome
    category_scores: dict[str, CategoryScore] | None = None
    flagged_items: list[JsonObject] | None = None
    recommendations: list[JsonObject] | None = None
    auditor: str | JsonObject | None = None
    completed_at: Timestamp | None = None
    error: str | None = Field(default=None, description="Why the audit could not finish.")


class FeedbackSubmitted(_Data):
    """A reviewer's feedback on a version; it becomes an iteration log."""

    artifact_id: Id
    version_id: Id
    feedback_text: Annotated[str, StringConstraints(min_length=1, strip_whitespace=False)]
    tags: list[str] | None = None
    rationale: str | None = None
    submitted_by: str | None = None
    submitted_at: Timestamp | None = None


class CampaignCreated(_Data):
    name: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    brief: JsonObject | None = None


class StatusChanged(_Data):
    status: CampaignStatus


class RunStarted(_Data):
    run_id: Id
    execution_mode: Literal["parallel", "sequential"] | None = None


class RunCompleted(_Data):
    run_id: Id
    status: Literal["completed", "failed", "cancelled"]
    error: str | None = None


class VersionApproved(_Data):
    version_id: Id
    approved_by: str | None = None


class VersionArchiveRequested(_Data):
    version_id: Id


class DeleteRequested(_Data):
    pass


class RestoreRequested(_Data):
    pass


EventData = (
    ArtifactGenerated
    | AuditCompleted
    | FeedbackSubmitted
    | CampaignCreated
    | StatusChanged
    | RunStarted
    | RunCompleted
    | VersionApproved
    | VersionArchiveRequested
    | DeleteRequested
    | RestoreRequested
)

DATA_MODELS: dict[EventType, type[EventData]] = {
    EventType.ARTIFACT_GENERATED: ArtifactGenerated,
    EventType.AUDIT_COMPLETED: AuditCompleted,
    EventType.FEEDBACK_SUBMITTED: FeedbackSubmitted,
    EventType.CAMPAIGN_CREATED: CampaignCreated,
    EventType.STATUS_CHANGED: StatusChanged,
    EventType.RUN_STARTED: RunStarted,
    EventType.RUN_COMPLETED: RunCompleted,
    EventType.VERSION_APPROVED: VersionApproved,
    EventType.VERSION_ARCHIVE_REQUESTED: VersionArchiveRequested,
    EventType.DELETE_REQUESTED: DeleteRequested,
    EventType.RESTORE_REQUESTED: RestoreRequested,
}

# Events that name a version which must already be stored; they wait for it (contract 5).
VERSION_BOUND = (AuditCompleted, FeedbackSubmitted, VersionApproved, VersionArchiveRequested)


class CloudEventEnvelope(BaseModel):
    """A CloudEvents 1.0 event as read in either content mode; `data` is validated by `type`.

    Structured mode gives this object as the record's value; binary mode gives the same
    attributes from headers and `data` from the value (`service.domain.ingest`).
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"]
    id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    source: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    type: Annotated[str, StringConstraints(min_length=1)]
    time: Timestamp | None = None  # optional in CloudEvents: the record's timestamp stands in
    subject: str | None = None
    datacontenttype: str | None = None
    data: JsonObject


@dataclass(slots=True)
class Event:
    """A valid inbound event: its envelope attributes plus typed data. Never changed after
    it is made (not frozen, for speed: see `RawRecord`)."""

    source: str
    id: str
    type: EventType
    time: datetime
    data: EventData
    # The CloudEvents Distributed Tracing extension as the producer sent it (structured-mode
    # attributes or `ce_traceparent` / `ce_tracestate` headers): the ledger's span for the
    # event continues that trace (service.app.tracing). Not validated here: one that does not
    # parse only starts a new trace, it never refuses the event.
    traceparent: str | None = None
    tracestate: str | None = None
    # `(source, id)` identifies an event; this is its stored form. Computed once: the rules
    # and the store ask for it several times per event.
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.key = event_key(self.source, self.id)

    @property
    def campaign_id(self) -> str:
        return self.data.campaign_id


def event_key(source: str, event_id: str) -> str:
    # Length-prefixed, so no two (source, id) pairs share a key whatever characters they hold.
    return f"{len(source)}:{source}{event_id}"


# ---- outbound events -------------------------------------------------------------------


class ActiveVersion(BaseModel):
    version_id: str
    version_number: int
    created_at: str
    audit_state: Literal["pending", "passed", "conditional", "failed", "unaudited"]
    approved: bool


class SnapshotArtifact(BaseModel):
    artifact_id: str
    artifact_type: str
    version_count: int
    active_version: ActiveVersion | None


class SnapshotRun(BaseModel):
    run_id: str
    status: RunStatus
    execution_mode: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    version_count: int = 0


class SnapshotCounts(BaseModel):
    versions: int
    audit_reports: int
    iteration_logs: int
    archived_versions: int = 0
    approved_versions: int = 0


class CampaignSnapshot(BaseModel):
    """`data` of `campaign.snapshot.updated` and the body of the HTTP snapshot."""

    campaign_id: str
    revision: int = Field(description="Per campaign: 1, 2, 3 ... one per change, never reused.")
    name: str | None
    status: CampaignStatus
    deleted: bool
    created_at: str
    updated_at: str
    artifacts: list[SnapshotArtifact]
    runs: list[SnapshotRun]
    counts: SnapshotCounts


class RejectedHeader(BaseModel):
    """One header of a rejected record: `value` when it is UTF-8, else `value_base64`."""

    name: str
    value: str | None = None
    value_base64: str | None = None


class RejectedEventData(BaseModel):
    """`data` of `campaign.event.rejected` on the dead-letter topic."""

    reason: str = Field(description="A short code, e.g. not_json, invalid_data, held_too_long.")
    detail: str = Field(description="What is wrong, in words a person can act on.")
    topic: str
    partition: int
    offset: int
    key: str | None = Field(description="The original key when it is UTF-8 text.")
    key_base64: str | None = Field(
        default=None, description="The original key, base64, when it is not UTF-8."
    )
    value: str | None = Field(default=None, description="The original value when it is UTF-8.")
    value_base64: str | None = Field(
        default=None, description="The original value, base64, when it is not UTF-8."
    )
    headers: list[RejectedHeader] = Field(
        default_factory=list,
        description="The original record's headers, in order (binary mode's `ce_*` among them).",
    )


class OutboundCloudEvent(BaseModel):
    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str
    type: str
    time: str
    subject: str | None = None
    datacontenttype: str = "application/json"
    traceparent: str | None = Field(
        default=None,
        description="CloudEvents Distributed Tracing: the W3C trace context of the ledger's "
        "span that produced this event (present while tracing is on); continue the trace "
        "from it.",
    )
    tracestate: str | None = Field(
        default=None, description="W3C trace state that goes with `traceparent`, when any."
    )


class SnapshotUpdatedEvent(OutboundCloudEvent):
    type: Literal["campaign.snapshot.updated"] = "campaign.snapshot.updated"
    data: CampaignSnapshot


class EventRejectedEvent(OutboundCloudEvent):
    type: Literal["campaign.event.rejected"] = "campaign.event.rejected"
    data: RejectedEventData


# What `service.domain.ingest` accepts as `datacontenttype` (it also ignores letter case).
JSON_MEDIA_TYPE = r"^(application/json|[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+\+json)\s*(;.*)?$"


class InboundCloudEvent(BaseModel):
    """The attributes of an inbound CloudEvent, for the documents (ingest validates them)."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"]
    id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    source: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    type: str
    time: AwareDatetime | None = Field(
        default=None,
        description="RFC 3339 with a zone. When absent, the Kafka record's timestamp is used.",
    )
    subject: str | None = Field(default=None, description="When set, equal to data.campaign_id.")
    datacontenttype: Annotated[str, StringConstraints(pattern=JSON_MEDIA_TYPE)] | None = Field(
        default=None, description="When set, a JSON media type; data is always a JSON object."
    )
    traceparent: str | None = Field(
        default=None,
        description="CloudEvents Distributed Tracing: the producer's W3C trace context "
        "(`00-<trace id>-<span id>-<flags>`; binary mode: header `ce_traceparent`, or a plain "
        "`traceparent` header). The ledger's span for the event continues that trace; one "
        "that does not parse starts a new trace and never refuses the event.",
    )
    tracestate: str | None = Field(
        default=None, description="W3C trace state that goes with `traceparent`."
    )


def inbound_event_schemas() -> dict[EventType, type[BaseModel]]:
    """One documented CloudEvent model per inbound type, for schemas and AsyncAPI."""
    models: dict[EventType, type[BaseModel]] = {}
    for event_type, data_model in DATA_MODELS.items():
        models[event_type] = _envelope_for(event_type, data_model)
    return models


def inbound_model_name(event_type: EventType) -> str:
    """`campaign.run.started` -> `CampaignRunStarted`."""
    return "".join(part.capitalize() for part in event_type.replace("-", ".").split("."))


# The envelope of each consumed type with its `data` typed: ingest validates a common event
# in one call instead of two.
TYPED_ENVELOPES: dict[str, type[CloudEventEnvelope]] = {
    event_type.value: create_model(
        f"{inbound_model_name(event_type)}Envelope",
        __base__=CloudEventEnvelope,
        data=(data_model, ...),
    )
    for event_type, data_model in DATA_MODELS.items()
}


def _envelope_for(event_type: EventType, data_model: type[BaseModel]) -> type[BaseModel]:
    return create_model(
        f"{inbound_model_name(event_type)}Event",
        __base__=InboundCloudEvent,
        __doc__=(
            f"A `{event_type.value}` CloudEvent. Structured mode: the Kafka record's value is "
            "this object. Binary mode: the value is `data` alone, each other attribute is a "
            "header `ce_<name>`, and `datacontenttype` is the header `content-type`."
        ),
        type=(Literal[event_type.value], ...),  # type: ignore[arg-type]
        data=(data_model, ...),
    )
