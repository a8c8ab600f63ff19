"""The rules of the ledger: how a batch of events changes campaigns, in plain Python.

`apply_batch` takes the events of one Kafka batch (in partition order) and a `View` of the
stored state they touch, and returns `Changes`: the documents to insert, the fields to set,
the events to hold or release, and one snapshot per change. It does no I/O: the caller loads
the view, and when the rules need something the view lacks they raise `Missing`, the caller
loads it and runs the (deterministic) rules again.

The guarantees of the contract live here:
- idempotence: an event whose `(source, id)` was applied before changes nothing;
- numbering: `version_number` is the artifact's count of versions plus one, in arrival order;
- no orphans: an event that names a version not yet stored is held and applied right after
  that version arrives, in its original order;
- revisions: every event that changes a campaign moves its revision by exactly one and
  yields that revision's snapshot. Held events apply as their own changes, and times merge
  with min/max, so a set of events gives the same final state in any arrival order that
  keeps each topic's per-campaign order.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import orjson

from service.domain.events import (
    VERSION_BOUND,
    ArtifactGenerated,
    AuditCompleted,
    CampaignCreated,
    DeleteRequested,
    Event,
    FeedbackSubmitted,
    RestoreRequested,
    RunCompleted,
    RunStarted,
    RunStatus,
    StatusChanged,
    VersionApproved,
    VersionArchiveRequested,
    event_key,
)
from service.domain.ingest import RawRecord
from service.domain.state import (
    AUDIT_STATE_BY_OUTCOME,
    ArtifactState,
    CampaignState,
    RunState,
    VersionState,
)

# What the rules patch (whole or in part), and every kind of record they insert.
Entity = Literal["artifact", "run", "version"]  # patched; a campaign is stored whole
Kind = Literal["campaign", "artifact", "run", "version", "audit_report", "iteration_log"]
Record = dict[str, Any]


def derive_id(prefix: str, event_key: str) -> str:
    """A stable id from an event's `(source, id)`: redelivery yields the same id."""
    digest = hashlib.sha256(event_key.encode("utf-8")).hexdigest()[:32]
    return f"{prefix}-{digest}"


def generated_version_id(event: Event, data: ArtifactGenerated) -> str:
    """The id of the version a generation event makes: the one it names, or one derived from
    the event (so a redelivery names the same version)."""
    return data.version_id or derive_id("v", event.key)


def made_by(record: Record) -> str:
    """The key of the event that made a stored version, from its `source_event`."""
    source_event = record.get("source_event") or {}
    if "source" not in source_event or "id" not in source_event:
        return ""
    return event_key(source_event["source"], source_event["id"])


def content_digest(content: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(slots=True)
class Inbound:
    """A valid event and the record it came in, kept for holding and dead-lettering (never
    changed after it is made; not frozen, for speed: see `RawRecord`)."""

    event: Event
    record: RawRecord


@dataclass(frozen=True, slots=True)
class HeldEvent:
    """An event waiting for its version; `seq` orders held events by arrival."""

    inbound: Inbound
    version_id: str
    seq: int
    held_at: datetime

    @property
    def key(self) -> str:
        return self.inbound.event.key


@dataclass(frozen=True, slots=True)
class SemanticRejection:
    inbound: Inbound
    reason: str
    detail: str


class Missing(Exception):
    """The view lacks what the rules need; `kind` and `key` say what to load.

    `campaign_id`, when known, is the campaign the key belongs to: the store's query then
    carries the shard key.
    """

    def __init__(self, kind: str, key: str, limit: int = 0, campaign_id: str = "") -> None:
        super().__init__(f"{kind}:{key}")
        self.kind = kind
        self.key = key
        self.limit = limit
        self.campaign_id = campaign_id


@dataclass
class View:
    """The stored state a batch touches, as loaded before the rules run.

    A key absent from a mapping was not loaded (the rules raise `Missing`); a key mapped to
    None was looked up and does not exist.
    """

    processed: set[str] = field(default_factory=set)
    checked_events: set[str] = field(default_factory=set)
    campaigns: dict[str, CampaignState | None] = field(default_factory=dict)
    artifact_owners: dict[str, tuple[str, str] | None] = field(default_factory=dict)
    run_owners: dict[str, str | None] = field(default_factory=dict)
    versions: dict[str, VersionState | None] = field(default_factory=dict)
    held: dict[str, list[HeldEvent]] = field(default_factory=dict)
    # artifact id -> its highest unarchived stored versions, highest first, and the limit used
    unarchived: dict[str, tuple[list[VersionState], int]] = field(default_factory=dict)

    def is_processed(self, key: str) -> bool:
        if key not in self.checked_events:
            raise Missing("processed", key)
        return key in self.processed

    def campaign(self, campaign_id: str) -> CampaignState | None:
        if campaign_id not in self.campaigns:
            raise Missing("campaign", campaign_id)
        return self.campaigns[campaign_id]

    def owners_in_states(self, artifact_ids: set[str]) -> set[str]:
        """Note the owner of each of these artifacts that a loaded campaign's state holds, and
        return the others: those whose owner only the artifacts collection can tell.

        One in a loaded campaign's state belongs to that campaign (ids are global, and an
        owner is checked when an artifact is created)."""
        for state in self.campaigns.values():
            if state is None:
                continue
            for artifact_id in artifact_ids & state.artifacts.keys():
                artifact = state.artifacts[artifact_id]
                self.artifact_owners[artifact_id] = (state.campaign_id, artifact.artifact_type)
        return artifact_ids - self.artifact_owners.keys()

    def artifact_owner(self, artifact_id: str) -> tuple[str, str] | None:
        if artifact_id not in self.artifact_owners:
            raise Missing("artifact", artifact_id)
        return self.artifact_owners[artifact_id]

    def run_owner(self, run_id: str) -> str | None:
        if run_id not in self.run_owners:
            raise Missing("run", run_id)
        return self.run_owners[run_id]

    def version(self, version_id: str) -> VersionState | None:
        if version_id not in self.versions:
            raise Missing("version", version_id)
        return self.versions[version_id]

    def held_for(self, version_id: str) -> list[HeldEvent]:
        if version_id not in self.held:
            raise Missing("held", version_id)
        return self.held[version_id]

    def unarchived_top(self, campaign_id: str, artifact_id: str, limit: int) -> list[VersionState]:
        loaded = self.unarchived.get(artifact_id)
        if loaded is None or loaded[1] < limit:
            raise Missing("unarchived", artifact_id, limit, campaign_id)
        return loaded[0]


@dataclass
class Changes:
    """Everything one batch does, for the store to write in one transaction."""

    inserts: dict[Kind, list[Record]] = field(default_factory=dict)
    patches: dict[tuple[Entity, str], Record] = field(default_factory=dict)
    campaigns: dict[str, CampaignState] = field(default_factory=dict)
    # Each revision's snapshot; with publication "latest", only each campaign's newest.
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    revisions: int = 0  # every revision made, published or not
    processed: list[tuple[str, str]] = field(default_factory=list)  # (event key, campaign id)
    held: list[HeldEvent] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    rejections: list[SemanticRejection] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0

    def insert(self, kind: Kind, record: Record) -> None:
        self.inserts.setdefault(kind, []).append(record)

    def patch(self, entity: Entity, entity_id: str, fields: Record) -> None:
        self.patches.setdefault((entity, entity_id), {}).update(fields)


class _Reject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


Publication = Literal["every", "latest"]


def apply_batch(
    inbound: Sequence[Inbound],
    view: View,
    *,
    now: datetime,
    seq_base: int,
    publication: Publication = "every",
) -> Changes:
    """Apply a batch's valid events, in order, to the stored state in `view`.

    With `publication="latest"` a campaign's snapshot is rendered once, after the batch, for
    its newest revision (SNAPSHOT_PUBLICATION); the revisions count the same.
    """
    return _Batch(view, now, seq_base, publication).run(inbound)


def prefetch_keys(inbound: Iterable[Inbound]) -> dict[str, set[str]]:
    """What the rules will surely ask for: load it before the first run."""
    keys: dict[str, set[str]] = {
        "processed": set(),
        "campaign": set(),
        "artifact": set(),
        "run": set(),
        "version": set(),
        "held": set(),
    }
    for item in inbound:
        event, data = item.event, item.event.data
        keys["processed"].add(event.key)
        keys["campaign"].add(data.campaign_id)
        if isinstance(data, ArtifactGenerated):
            version_id = generated_version_id(event, data)
            keys["artifact"].add(data.artifact_id)
            keys["version"].add(version_id)
            keys["held"].add(version_id)
            if data.run_id:
                keys["run"].add(data.run_id)
        elif isinstance(data, VERSION_BOUND):
            keys["version"].add(data.version_id)
        elif isinstance(data, RunStarted | RunCompleted):
            keys["run"].add(data.run_id)
    return keys


class _Batch:
    def __init__(
        self, view: View, now: datetime, seq_base: int, publication: Publication = "every"
    ) -> None:
        self.publication = publication
        self.view = view
        self.now = now
        self.seq_base = seq_base
        self.changes = Changes()
        self.campaigns: dict[str, CampaignState] = {}
        self.versions: dict[str, VersionState] = {}  # loaded or created in this batch
        self.new_versions: dict[str, Record] = {}
        self.dirty_versions: set[str] = set()
        # Artifacts whose own document changes: new ones, and one whose first version came
        # late. What follows from its versions (their count, the active one, the last time)
        # is the snapshot's, so a new version rewrites no artifact document.
        self.written_artifacts: set[tuple[str, str]] = set()
        self.dirty_runs: set[tuple[str, str]] = set()
        self.seen: set[str] = set()
        self.marked_by_version: set[str] = set()  # events whose new version is their mark
        self.local_held: dict[str, list[HeldEvent]] = {}
        self.archived_here: set[str] = set()
        self.changed: set[str] = set()
        # ids first claimed in this batch: owners the view cannot know yet
        self.new_artifact_owners: dict[str, str] = {}
        self.new_run_owners: dict[str, str] = {}

    # ---- driving ---------------------------------------------------------------------

    def run(self, inbound: Sequence[Inbound]) -> Changes:
        for index, item in enumerate(inbound):
            self._accept(item, self.seq_base + index)
        self._flush()
        if self.publication == "latest":
            self.changes.snapshots = [
                self.campaigns[campaign_id].snapshot() for campaign_id in sorted(self.changed)
            ]
        return self.changes

    def _accept(self, item: Inbound, seq: int) -> None:
        event = item.event
        duplicate = event.key in self.seen or self.view.is_processed(event.key)
        if duplicate or self._made_a_version(event):
            self.changes.duplicates += 1
            return
        self.seen.add(event.key)
        # Marked once, at first sight: applied, held or refused, it is never taken again.
        self.changes.processed.append((event.key, event.campaign_id))
        data = event.data
        if isinstance(data, VERSION_BOUND) and self._version(data.version_id) is None:
            held = HeldEvent(item, data.version_id, seq, self.now)
            self.local_held.setdefault(data.version_id, []).append(held)
            self.changes.held.append(held)
            return
        self._apply(item)

    def _made_a_version(self, event: Event) -> bool:
        """A version is the processed mark of the event that made it: one document less per
        generated version (its mark would be written beside it in the same transaction)."""
        data = event.data
        if not isinstance(data, ArtifactGenerated):
            return False
        version = self._version(generated_version_id(event, data))
        return version is not None and version.made_by == event.key

    def _apply(self, item: Inbound) -> None:
        event = item.event
        campaign = self._campaign(event.campaign_id)
        try:
            changed, released = self._dispatch(event, campaign)
        except _Reject as reject:
            self.changes.rejections.append(SemanticRejection(item, reject.reason, reject.detail))
            return
        self.changes.applied += 1
        if changed:
            if not campaign.exists:  # the event that brings the campaign into being
                campaign.created_at = campaign.updated_at = event.time
                campaign.exists = True
            campaign.revision += 1
            campaign.created_at = min(campaign.created_at, event.time)
            campaign.updated_at = max(campaign.updated_at, event.time)
            self.changed.add(campaign.campaign_id)
            self.changes.revisions += 1
            if self.publication == "every":
                self.changes.snapshots.append(campaign.snapshot())
        for held in released:
            self._apply(held.inbound)

    def _dispatch(self, event: Event, campaign: CampaignState) -> tuple[bool, list[HeldEvent]]:
        data = event.data
        if isinstance(data, ArtifactGenerated):
            return self._artifact_generated(event, data, campaign)
        return _RULES[type(data)](self, event, data, campaign), []

    # ---- state access ------------------------------------------------------------------

    def _campaign(self, campaign_id: str) -> CampaignState:
        campaign = self.campaigns.get(campaign_id)
        if campaign is None:
            stored = self.view.campaign(campaign_id)
            # A copy: the view must stay as loaded, since the rules may run again over it.
            campaign = (
                stored.clone() if stored is not None else CampaignState.new(campaign_id, self.now)
            )
            self.campaigns[campaign_id] = campaign
        return campaign

    def _version(self, version_id: str) -> VersionState | None:
        version = self.versions.get(version_id)
        if version is None:
            stored = self.view.version(version_id)
            if stored is not None:
                version = self.versions[version_id] = dataclasses.replace(stored)
        return version

    def _bound_version(self, event: Event, version_id: str) -> VersionState:
        version = self._version(version_id)
        if version is None:  # pragma: no cover - _accept holds these
            msg = f"version {version_id} is not stored"
            raise AssertionError(msg)
        if version.campaign_id != event.campaign_id:
            raise _Reject(
                "campaign_mismatch",
                f"version {version_id} belongs to campaign {version.campaign_id}, "
                f"not {event.campaign_id}",
            )
        return version

    def _run(self, campaign: CampaignState, run_id: str) -> RunState:
        run = campaign.runs.get(run_id)
        if run is None:
            owner = self.new_run_owners.get(run_id) or self.view.run_owner(run_id)
            if owner is not None and owner != campaign.campaign_id:
                raise _Reject(
                    "id_conflict", f"run {run_id} belongs to campaign {owner}; run ids are global"
                )
            run = RunState(run_id=run_id)
            campaign.runs[run_id] = run
            self.new_run_owners[run_id] = campaign.campaign_id
        self.dirty_runs.add((campaign.campaign_id, run_id))
        return run

    def _refresh_active(self, campaign: CampaignState, version: VersionState) -> None:
        artifact = campaign.artifacts[version.artifact_id]
        if artifact.active is not None and artifact.active.version_id == version.version_id:
            artifact.active = version.summary()

    def _touch_version(self, version: VersionState) -> None:
        self.dirty_versions.add(version.version_id)

    # ---- the rules, one per event type -------------------------------------------------

    def _artifact_generated(
        self, event: Event, data: ArtifactGenerated, campaign: CampaignState
    ) -> tuple[bool, list[HeldEvent]]:
        version_id = generated_version_id(event, data)
        digest = content_digest(data.content)
        artifact = campaign.artifacts.get(data.artifact_id)
        if artifact is None:
            stored_owner = self.view.artifact_owner(data.artifact_id)
            owner = self.new_artifact_owners.get(data.artifact_id) or (
                stored_owner[0] if stored_owner else None
            )
            if owner is not None and owner != campaign.campaign_id:
                raise _Reject(
                    "id_conflict",
                    f"artifact {data.artifact_id} belongs to campaign {owner}; "
                    "artifact ids are global",
                )
        elif artifact.artifact_type != data.artifact_type:
            raise _Reject(
                "artifact_type_conflict",
                f"artifact {data.artifact_id} is a {artifact.artifact_type}, "
                f"not a {data.artifact_type}",
            )
        existing = self._version(version_id)
        if existing is not None:
            if (
                existing.campaign_id == campaign.campaign_id
                and existing.artifact_id == data.artifact_id
                and existing.content_sha256 == digest
            ):
                return False, []  # the same version sent again under another event id
            raise _Reject(
                "version_conflict",
                f"version {version_id} is already stored with other content or another "
                "artifact; versions are never rewritten",
            )
        if data.run_id:
            run = self._run(campaign, data.run_id)
            run.version_count += 1
        created_at = data.generated_at or event.time
        if artifact is None:
            artifact = ArtifactState(
                artifact_id=data.artifact_id,
                artifact_type=data.artifact_type,
                created_at=created_at,
                updated_at=created_at,
            )
            campaign.artifacts[data.artifact_id] = artifact
            self.new_artifact_owners[data.artifact_id] = campaign.campaign_id
            self.written_artifacts.add((campaign.campaign_id, data.artifact_id))
        elif created_at < artifact.created_at:  # an older version arrived late
            self.written_artifacts.add((campaign.campaign_id, data.artifact_id))
        artifact.version_count += 1
        artifact.created_at = min(artifact.created_at, created_at)
        artifact.updated_at = max(artifact.updated_at, created_at)
        version = VersionState(
            version_id=version_id,
            campaign_id=campaign.campaign_id,
            artifact_id=data.artifact_id,
            version_number=artifact.version_count,
            created_at=created_at,
            content_sha256=digest,
            made_by=event.key,
        )
        self.versions[version_id] = version
        self.marked_by_version.add(event.key)
        artifact.active = version.summary()  # the newest version is never archived yet
        campaign.counts.versions += 1
        self.new_versions[version_id] = {
            "_id": version_id,
            "version_id": version_id,
            "campaign_id": campaign.campaign_id,
            "artifact_id": data.artifact_id,
            "artifact_type": data.artifact_type,
            "version_number": version.version_number,
            "created_at": created_at,
            "content": data.content,
            "content_sha256": digest,
            "extra": data.extra,
            "source_event": {"source": event.source, "id": event.id, "time": event.time},
        }
        # Optional links only when given: the sparse indexes on them then stay small.
        optional = {
            "run_id": data.run_id,
            "parent_version_id": data.parent_version_id,
            "feedback_id": data.feedback_id,
            "agent": data.agent,
            "metadata": data.metadata,
        }
        self.new_versions[version_id].update({k: v for k, v in optional.items() if v is not None})
        stored_held = self.view.held_for(version_id)
        local_held = self.local_held.pop(version_id, [])
        self.changes.released.extend(held.key for held in stored_held)
        if local_held:  # held earlier in this batch: they need never be stored
            self.changes.held = [h for h in self.changes.held if h.version_id != version_id]
        return True, sorted([*stored_held, *local_held], key=lambda held: held.seq)

    def _audit_completed(self, event: Event, data: AuditCompleted, campaign: CampaignState) -> bool:
        version = self._bound_version(event, data.version_id)
        version.audit_attempts += 1
        version.audit_state = AUDIT_STATE_BY_OUTCOME[data.outcome]
        self._touch_version(version)
        self._refresh_active(campaign, version)
        campaign.counts.audit_reports += 1
        outcome = data.outcome.value
        campaign.audit_outcomes[outcome] = campaign.audit_outcomes.get(outcome, 0) + 1
        self.changes.insert(
            "audit_report",
            {
                "_id": derive_id("ar", event.key),
                "campaign_id": campaign.campaign_id,
                "artifact_id": version.artifact_id,
                "version_id": version.version_id,
                "attempt": version.audit_attempts,
                "outcome": outcome,
                "audit_state": version.audit_state,
                "category_scores": (
                    {k: v.model_dump() for k, v in data.category_scores.items()}
                    if data.category_scores is not None
                    else None
                ),
                "flagged_items": data.flagged_items,
                "recommendations": data.recommendations,
                "auditor": data.auditor,
                "error": data.error,
                "completed_at": data.completed_at or event.time,
                "extra": data.extra,
                "source_event": {"source": event.source, "id": event.id, "time": event.time},
            },
        )
        return True

    def _feedback_submitted(
        self, event: Event, data: FeedbackSubmitted, campaign: CampaignState
    ) -> bool:
        version = self._bound_version(event, data.version_id)
        if version.artifact_id != data.artifact_id:
            raise _Reject(
                "version_mismatch",
                f"version {data.version_id} is a version of artifact {version.artifact_id}, "
                f"not {data.artifact_id}",
            )
        campaign.counts.iteration_logs += 1
        # Numbered per version: a version's feedback all waits or all applies, in topic
        # order, so the number is the same however the topics interleave.
        version.feedback_count += 1
        self._touch_version(version)
        self.changes.insert(
            "iteration_log",
            {
                "_id": derive_id("it", event.key),
                "feedback_id": event.id,
                "campaign_id": campaign.campaign_id,
                "artifact_id": data.artifact_id,
                "version_id": data.version_id,
                "version_number": version.version_number,
                "feedback_number": version.feedback_count,
                "feedback_text": data.feedback_text,
                "tags": data.tags,
                "rationale": data.rationale,
                "submitted_by": data.submitted_by,
                "submitted_at": data.submitted_at or event.time,
                "extra": data.extra,
                "source_event": {"source": event.source, "id": event.id, "time": event.time},
            },
        )
        return True

    def _version_approved(
        self, event: Event, data: VersionApproved, campaign: CampaignState
    ) -> bool:
        version = self._bound_version(event, data.version_id)
        if version.approved:
            return False
        version.approved = True
        self._touch_version(version)
        self.changes.patch(
            "version",
            version.version_id,
            {"approved_by": data.approved_by, "approved_at": event.time},
        )
        campaign.counts.approved_versions += 1
        self._refresh_active(campaign, version)
        return True

    def _version_archived(
        self, event: Event, data: VersionArchiveRequested, campaign: CampaignState
    ) -> bool:
        version = self._bound_version(event, data.version_id)
        if version.archived:
            return False
        version.archived = True
        self.archived_here.add(version.version_id)
        self._touch_version(version)
        self.changes.patch("version", version.version_id, {"archived_at": event.time})
        campaign.counts.archived_versions += 1
        artifact = campaign.artifacts[version.artifact_id]
        if artifact.active is not None and artifact.active.version_id == version.version_id:
            successor = self._highest_unarchived(
                campaign.campaign_id, version.artifact_id, version.version_number
            )
            artifact.active = successor.summary() if successor else None
        return True

    def _highest_unarchived(
        self, campaign_id: str, artifact_id: str, below: int
    ) -> VersionState | None:
        """The highest version under `below` that is not archived, stored or new."""
        # Of the stored unarchived versions, at most those archived in this batch are out:
        # one more than that many always holds the answer, if there is one.
        stored = self.view.unarchived_top(campaign_id, artifact_id, len(self.archived_here) + 1)
        candidates = [
            self.versions.get(v.version_id, v)
            for v in stored
            if v.version_number < below and v.version_id not in self.archived_here
        ]
        candidates += [
            v
            for v in self.versions.values()
            if v.artifact_id == artifact_id and not v.archived and v.version_number < below
        ]
        return max(candidates, key=lambda v: v.version_number, default=None)

    def _campaign_created(
        self, event: Event, data: CampaignCreated, campaign: CampaignState
    ) -> bool:
        if campaign.name == data.name and campaign.brief == data.brief:
            return False
        campaign.name = data.name
        campaign.brief = data.brief
        return True

    def _status_changed(self, event: Event, data: StatusChanged, campaign: CampaignState) -> bool:
        if campaign.status == data.status:
            return False
        campaign.status = data.status
        return True

    def _run_started(self, event: Event, data: RunStarted, campaign: CampaignState) -> bool:
        before = campaign.runs.get(data.run_id)
        snapshot = None if before is None else before.render()
        run = self._run(campaign, data.run_id)
        run.started_at = event.time if run.started_at is None else min(run.started_at, event.time)
        if data.execution_mode is not None:
            run.execution_mode = data.execution_mode
        return snapshot != run.render()

    def _run_completed(self, event: Event, data: RunCompleted, campaign: CampaignState) -> bool:
        before = campaign.runs.get(data.run_id)
        snapshot = None if before is None else (before.render(), before.error)
        run = self._run(campaign, data.run_id)
        run.status = RunStatus(data.status)
        run.completed_at = event.time
        run.error = data.error
        return snapshot != (run.render(), run.error)

    def _delete_requested(
        self, event: Event, data: DeleteRequested, campaign: CampaignState
    ) -> bool:
        if campaign.deleted:
            return False
        campaign.deleted = True
        campaign.deleted_at = event.time
        return True

    def _restore_requested(
        self, event: Event, data: RestoreRequested, campaign: CampaignState
    ) -> bool:
        if not campaign.deleted:
            return False
        campaign.deleted = False
        campaign.deleted_at = None
        return True

    # ---- the writes ---------------------------------------------------------------------

    def _flush(self) -> None:
        changes = self.changes
        changes.processed = [p for p in changes.processed if p[0] not in self.marked_by_version]
        for version_id, record in self.new_versions.items():
            version = self.versions[version_id]
            record.update(_version_marks(version))
            record.update(changes.patches.pop(("version", version_id), {}))
            changes.insert("version", record)
        for version_id in self.dirty_versions - self.new_versions.keys():
            changes.patch("version", version_id, _version_marks(self.versions[version_id]))
        for campaign_id, artifact_id in self.written_artifacts:
            artifact = self.campaigns[campaign_id].artifacts[artifact_id]
            changes.patch(
                "artifact",
                artifact_id,
                {
                    "campaign_id": campaign_id,
                    "artifact_type": artifact.artifact_type,
                    "created_at": artifact.created_at,
                },
            )
        for campaign_id, run_id in self.dirty_runs:
            run = self.campaigns[campaign_id].runs[run_id]
            changes.patch(
                "run",
                run_id,
                {
                    "campaign_id": campaign_id,
                    "status": run.status.value,
                    "execution_mode": run.execution_mode,
                    "started_at": run.started_at,
                    "completed_at": run.completed_at,
                    "error": run.error,
                    "version_count": run.version_count,
                },
            )
        for campaign_id in self.changed:
            campaign = self.campaigns[campaign_id]
            changes.campaigns[campaign_id] = campaign  # stored whole, the entity with it


# The rule of each event type but generation (which also releases held events). Functions,
# not a batch's bound methods: a table of those on the batch would make it a reference cycle,
# and each batch's view, versions and changes would wait for the cyclic collector's next full
# pass instead of going when the batch ends (the 1,000,000-event fill's RSS grew with them).
_RULES: dict[type, Callable[[_Batch, Event, Any, CampaignState], bool]] = {
    AuditCompleted: _Batch._audit_completed,
    FeedbackSubmitted: _Batch._feedback_submitted,
    VersionApproved: _Batch._version_approved,
    VersionArchiveRequested: _Batch._version_archived,
    CampaignCreated: _Batch._campaign_created,
    StatusChanged: _Batch._status_changed,
    RunStarted: _Batch._run_started,
    RunCompleted: _Batch._run_completed,
    DeleteRequested: _Batch._delete_requested,
    RestoreRequested: _Batch._restore_requested,
}


def _version_marks(version: VersionState) -> Record:
    return {
        "audit_state": version.audit_state,
        "audit_attempts": version.audit_attempts,
        "feedback_count": version.feedback_count,
        "archived": version.archived,
        "approved": version.approved,
    }
