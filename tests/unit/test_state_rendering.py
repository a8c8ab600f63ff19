"""A campaign's state renders its snapshot anew at each change, though parts are kept."""

from __future__ import annotations

from datetime import UTC, datetime

from service.domain.state import ArtifactState, VersionState

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def version(number: int, audit_state: str = "pending") -> VersionState:
    return VersionState(
        version_id=f"v-{number}",
        campaign_id="c-1",
        artifact_id="a-1",
        version_number=number,
        created_at=T0,
        content_sha256="0" * 64,
        audit_state=audit_state,
    )


def test_an_artifact_renders_what_it_is_now_after_each_change() -> None:
    artifact = ArtifactState("a-1", "copy", T0, T0)
    assert artifact.render()["active_version"] is None
    artifact.version_count = 1
    artifact.active = version(1).summary()
    first = artifact.render()
    assert first["version_count"] == 1
    assert first["active_version"]["version_id"] == "v-1"
    assert artifact.render() is first  # unchanged: the same rendering
    artifact.active = version(1, "passed").summary()  # an audit: same count, new summary
    assert artifact.render()["active_version"]["audit_state"] == "passed"
    copy = artifact.clone()
    copy.version_count = 2
    copy.active = version(2).summary()
    assert copy.render()["version_count"] == 2
    assert copy.render()["active_version"]["version_id"] == "v-2"
    # the original keeps its own
    assert artifact.render()["version_count"] == 1
    assert artifact.render()["active_version"]["audit_state"] == "passed"
    assert first["active_version"]["audit_state"] == "pending"  # a rendering never changes
