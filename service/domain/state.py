"""The state the rules work on, and how a campaign's state reads as a snapshot.

`CampaignState` is the aggregate: one per campaign, small however long its history grows
(it holds one summary per artifact and run, never per version). It is stored whole in the
campaign's document, so the HTTP snapshot is one read by key.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from service.domain.events import AuditOutcome, CampaignStatus, RunStatus

AUDIT_STATE_BY_OUTCOME = {
    AuditOutcome.PASS: "passed",
    AuditOutcome.CONDITIONAL: "conditional",
    AuditOutcome.FAIL: "failed",
    AuditOutcome.ERROR: "unaudited",
}
PENDING = "pending"


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return _iso(value)


@functools.lru_cache(maxsize=8192)
def _iso(value: datetime) -> str:
    # Memoized: a campaign's snapshot at each revision, and its private state at each
    # batch, format the same few times (created_at, the runs' and artifacts' times) again.
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value)


@dataclass(slots=True)
class VersionState:
    """What the rules need to know of a stored version (never its content)."""

    version_id: str
    campaign_id: str
    artifact_id: str
    version_number: int
    created_at: datetime
    content_sha256: str
    audit_state: str = PENDING
    audit_attempts: int = 0
    feedback_count: int = 0
    archived: bool = False
    approved: bool = False
    # The key of the event that made it: a version is that event's processed mark.
    made_by: str = ""

    def summary(self) -> ActiveVersionState:
        return ActiveVersionState(
            version_id=self.version_id,
            version_number=self.version_number,
            created_at=self.created_at,
            audit_state=self.audit_state,
            approved=self.approved,
        )


@dataclass(slots=True)
class ActiveVersionState:
    """An artifact's active version as the snapshot shows it. Replaced, never changed in
    place (`ArtifactState.render` relies on it)."""

    version_id: str
    version_number: int
    created_at: datetime
    audit_state: str
    approved: bool

    def render(self) -> dict[str, Any]:
        return {
            "version_id": self.version_id,
            "version_number": self.version_number,
            "created_at": iso(self.created_at),
            "audit_state": self.audit_state,
            "approved": self.approved,
        }


@dataclass(slots=True)
class ArtifactState:
    artifact_id: str
    artifact_type: str
    created_at: datetime
    updated_at: datetime
    version_count: int = 0
    active: ActiveVersionState | None = None
    # The last rendering and what it was made of: the snapshot shows only the count and the
    # active version (replaced, never changed in place), so a rendering holds while both do.
    # With every revision published, most artifacts of a campaign are rendered unchanged.
    _rendered: tuple[int, ActiveVersionState | None, dict[str, Any]] | None = field(
        default=None, repr=False, compare=False
    )

    def clone(self) -> ArtifactState:
        # `active` is replaced, never changed in place: it can be shared.
        return ArtifactState(
            self.artifact_id,
            self.artifact_type,
            self.created_at,
            self.updated_at,
            self.version_count,
            self.active,
            self._rendered,
        )

    def render(self) -> dict[str, Any]:
        rendered = self._rendered
        if rendered is None or rendered[0] != self.version_count or rendered[1] is not self.active:
            rendered = self._rendered = (
                self.version_count,
                self.active,
                {
                    "artifact_id": self.artifact_id,
                    "artifact_type": self.artifact_type,
                    "version_count": self.version_count,
                    "active_version": self.active.render() if self.active else None,
                },
            )
        return rendered[2]


@dataclass(slots=True)
class RunState:
    run_id: str
    status: RunStatus = RunStatus.RUNNING
    execution_mode: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    error: str | None = None
    version_count: int = 0

    def clone(self) -> RunState:
        return RunState(
            self.run_id,
            self.status,
            self.execution_mode,
            self.started_at,
            self.completed_at,
            self.error,
            self.version_count,
        )

    def render(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status.value,
            "execution_mode": self.execution_mode,
            "started_at": iso(self.started_at),
            "completed_at": iso(self.completed_at),
            "version_count": self.version_count,
        }


@dataclass(slots=True)
class Counts:
    versions: int = 0
    audit_reports: int = 0
    iteration_logs: int = 0
    archived_versions: int = 0
    approved_versions: int = 0

    def render(self) -> dict[str, int]:
        return {
            "versions": self.versions,
            "audit_reports": self.audit_reports,
            "iteration_logs": self.iteration_logs,
            "archived_versions": self.archived_versions,
            "approved_versions": self.approved_versions,
        }


@dataclass(slots=True)
class CampaignState:
    campaign_id: str
    created_at: datetime
    updated_at: datetime
    revision: int = 0
    name: str | None = None
    brief: dict[str, Any] | None = None
    status: CampaignStatus = CampaignStatus.DRAFT
    deleted: bool = False
    deleted_at: datetime | None = None
    artifacts: dict[str, ArtifactState] = field(default_factory=dict)
    runs: dict[str, RunState] = field(default_factory=dict)
    counts: Counts = field(default_factory=Counts)
    audit_outcomes: dict[str, int] = field(default_factory=dict)
    # False until an event brings the campaign into being (again, after a purge).
    exists: bool = True

    @classmethod
    def new(cls, campaign_id: str, now: datetime, after_revision: int = 0) -> CampaignState:
        """A campaign not stored yet; after a purge its revisions go on from the old ones."""
        return cls(
            campaign_id=campaign_id,
            created_at=now,
            updated_at=now,
            revision=after_revision,
            exists=False,
        )

    def clone(self) -> CampaignState:
        """A copy the rules may change while this one stays as loaded.

        What the rules change in place (artifacts, runs, counts, outcomes) is copied; times,
        `brief` and the active versions are only ever replaced, so they are shared. Many
        times cheaper than `copy.deepcopy`, which a batch would pay once per campaign.
        """
        return CampaignState(
            campaign_id=self.campaign_id,
            created_at=self.created_at,
            updated_at=self.updated_at,
            revision=self.revision,
            name=self.name,
            brief=self.brief,
            status=self.status,
            deleted=self.deleted,
            deleted_at=self.deleted_at,
            artifacts={key: a.clone() for key, a in self.artifacts.items()},
            runs={key: r.clone() for key, r in self.runs.items()},
            counts=Counts(**self.counts.render()),
            audit_outcomes=dict(self.audit_outcomes),
            exists=self.exists,
        )

    def snapshot(self) -> dict[str, Any]:
        """The contract's snapshot: `data` of campaign.snapshot.updated and the HTTP body."""
        return {
            "campaign_id": self.campaign_id,
            "revision": self.revision,
            "name": self.name,
            "status": self.status.value,
            "deleted": self.deleted,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "artifacts": [self.artifacts[key].render() for key in sorted(self.artifacts)],
            "runs": [self.runs[key].render() for key in sorted(self.runs)],
            "counts": self.counts.render(),
        }

    def entity(self) -> dict[str, Any]:
        """The campaign entity's own fields, as the campaigns collection stores them."""
        return {
            "name": self.name,
            "brief": self.brief,
            "status": self.status.value,
            "deleted": self.deleted,
            "deleted_at": self.deleted_at,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "revision": self.revision,
        }

    def private(self) -> dict[str, Any]:
        """What the rules need beyond the snapshot; stored beside it, never published."""
        return {
            "brief": self.brief,
            "deleted_at": iso(self.deleted_at),
            "audit_outcomes": dict(self.audit_outcomes),
            "artifact_times": {
                key: [iso(a.created_at), iso(a.updated_at)] for key, a in self.artifacts.items()
            },
            "run_errors": {key: r.error for key, r in self.runs.items() if r.error is not None},
        }

    @classmethod
    def restore(cls, snapshot: dict[str, Any], private: dict[str, Any]) -> CampaignState:
        """The inverse of `snapshot()` + `private()`."""
        times = private.get("artifact_times", {})
        errors = private.get("run_errors", {})
        artifacts = {}
        for item in snapshot["artifacts"]:
            active = item["active_version"]
            created, updated = times.get(item["artifact_id"], [None, None])
            artifacts[item["artifact_id"]] = ArtifactState(
                artifact_id=item["artifact_id"],
                artifact_type=item["artifact_type"],
                created_at=_required(parse_iso(created)),
                updated_at=_required(parse_iso(updated)),
                version_count=item["version_count"],
                active=ActiveVersionState(
                    version_id=active["version_id"],
                    version_number=active["version_number"],
                    created_at=_required(parse_iso(active["created_at"])),
                    audit_state=active["audit_state"],
                    approved=active["approved"],
                )
                if active
                else None,
            )
        runs = {
            item["run_id"]: RunState(
                run_id=item["run_id"],
                status=RunStatus(item["status"]),
                execution_mode=item.get("execution_mode"),
                started_at=parse_iso(item.get("started_at")),
                completed_at=parse_iso(item.get("completed_at")),
                error=errors.get(item["run_id"]),
                version_count=item.get("version_count", 0),
            )
            for item in snapshot["runs"]
        }
        return cls(
            campaign_id=snapshot["campaign_id"],
            created_at=_required(parse_iso(snapshot["created_at"])),
            updated_at=_required(parse_iso(snapshot["updated_at"])),
            revision=snapshot["revision"],
            name=snapshot["name"],
            brief=private.get("brief"),
            status=CampaignStatus(snapshot["status"]),
            deleted=snapshot["deleted"],
            deleted_at=parse_iso(private.get("deleted_at")),
            artifacts=artifacts,
            runs=runs,
            counts=Counts(**snapshot["counts"]),
            audit_outcomes=dict(private.get("audit_outcomes", {})),
        )


def _required(value: datetime | None) -> datetime:
    if value is None:
        msg = "a stored campaign state lacks a required time"
        raise ValueError(msg)
    return value
