"""The rules of the ledger (service/domain/ledger.py), run against the in-memory store."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from service.domain.ledger import Inbound, derive_id
from service.domain.state import CampaignState
from tests.events import iso_z
from tests.unit import factories as f
from tests.unit.memory_store import Delivery, MemoryStore, deliver, one_by_one

C1, C2 = "c-1", "c-2"


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def send(store: MemoryStore, *events: Inbound) -> Delivery:
    """Each event in its own batch."""
    return deliver(store, one_by_one(events))


def send_batch(store: MemoryStore, *events: Inbound) -> Delivery:
    """All events in one batch."""
    return deliver(store, [list(events)])


def versions_of(store: MemoryStore, artifact_id: str) -> list[dict[str, Any]]:
    return sorted(
        (v for v in store.version_records.values() if v["artifact_id"] == artifact_id),
        key=lambda v: v["version_number"],
    )


def audits_of(store: MemoryStore, version_id: str) -> list[dict[str, Any]]:
    return sorted(
        (a for a in store.audit_reports.values() if a["version_id"] == version_id),
        key=lambda a: a["attempt"],
    )


def artifact(snapshot: dict[str, Any] | None, artifact_id: str) -> dict[str, Any]:
    assert snapshot is not None
    [found] = [a for a in snapshot["artifacts"] if a["artifact_id"] == artifact_id]
    return found


def active_id(store: MemoryStore, campaign_id: str, artifact_id: str) -> str | None:
    active = artifact(store.snapshot(campaign_id), artifact_id)["active_version"]
    return active["version_id"] if active else None


def assert_consecutive(delivery: Delivery, store: MemoryStore) -> None:
    """Each campaign's published revisions are 1, 2, 3 … and the last is the stored one."""
    for campaign_id in {s["campaign_id"] for s in delivery.snapshots}:
        revisions = delivery.revisions(campaign_id)
        assert revisions == list(range(1, len(revisions) + 1)), (campaign_id, revisions)
        assert delivery.last(campaign_id) == store.snapshot(campaign_id)


# ---- versions ------------------------------------------------------------------------------


@pytest.mark.parametrize("batched", [False, True])
def test_five_regenerations_are_numbered_1_to_5(store: MemoryStore, batched: bool) -> None:
    events = [f.generated(C1, "a-1", f"v-{n}", content={"n": n}) for n in range(1, 6)]
    delivery = send_batch(store, *events) if batched else send(store, *events)
    assert [(v["_id"], v["version_number"]) for v in versions_of(store, "a-1")] == [
        (f"v-{n}", n) for n in range(1, 6)
    ]
    snap = store.snapshot(C1)
    assert snap is not None
    assert artifact(snap, "a-1")["version_count"] == 5
    assert artifact(snap, "a-1")["active_version"]["version_number"] == 5
    assert snap["counts"]["versions"] == 5
    assert snap["revision"] == 5
    assert_consecutive(delivery, store)


def test_the_artifact_document_holds_its_own_facts_and_a_new_version_leaves_it(
    store: MemoryStore,
) -> None:
    delivery = send(
        store,
        f.generated(C1, "a-1", "v-1", time=f.at(10)),
        f.generated(C1, "a-1", "v-2", time=f.at(5)),  # generated earlier, arrived late
        f.generated(C1, "a-1", "v-3", time=f.at(20)),
        f.archived(C1, "v-3"),
    )
    assert store.artifacts["a-1"] == {
        "_id": "a-1",
        "campaign_id": C1,
        "artifact_type": "copy",
        "created_at": f.at(5),
    }
    written = [[key for key in c.patches if key[0] == "artifact"] for c in delivery.changes]
    assert [len(w) for w in written] == [1, 1, 0, 0]  # created; first version came late
    # What follows from the versions is the snapshot's.
    snap = store.snapshot(C1)
    assert snap is not None
    item = artifact(snap, "a-1")
    assert item["version_count"] == 3
    assert item["active_version"]["version_id"] == "v-2"


def test_a_version_record_keeps_what_was_sent(store: MemoryStore) -> None:
    event = f.generated(
        C1,
        "a-1",
        "v-1",
        content={"$set": {"a.b": 1}},
        run_id="r-1",
        parent_version_id="v-0",
        feedback_id="fb-1",
        agent={"name": "copywriter"},
        metadata={"model": "m"},
        generated_at=iso_z(f.at(-60)),
        mood="sunny",
        source="agents/copy",
        id="e-1",
        time=f.at(0),
    )
    send(store, event)
    version = store.version_records["v-1"]
    assert version == {
        "_id": "v-1",
        "version_id": "v-1",
        "campaign_id": C1,
        "artifact_id": "a-1",
        "artifact_type": "copy",
        "version_number": 1,
        "created_at": f.at(-60),
        "content": {"$set": {"a.b": 1}},
        "content_sha256": version["content_sha256"],
        "run_id": "r-1",
        "parent_version_id": "v-0",
        "feedback_id": "fb-1",
        "agent": {"name": "copywriter"},
        "metadata": {"model": "m"},
        "extra": {"mood": "sunny"},
        "source_event": {"source": "agents/copy", "id": "e-1", "time": f.at(0)},
        "audit_state": "pending",
        "audit_attempts": 0,
        "feedback_count": 0,
        "archived": False,
        "approved": False,
    }


def test_a_version_record_omits_the_optional_links_not_sent(store: MemoryStore) -> None:
    """Absent, not null: the sparse indexes on these links then hold only the versions that
    have them."""
    send(store, f.generated(C1, "a-1", "v-1", content={"t": 1}, source="agents/copy", id="e-1"))
    version = store.version_records["v-1"]
    for name in ("run_id", "parent_version_id", "feedback_id", "agent", "metadata"):
        assert name not in version, name
    assert version == {
        "_id": "v-1",
        "version_id": "v-1",
        "campaign_id": C1,
        "artifact_id": "a-1",
        "artifact_type": "copy",
        "version_number": 1,
        "created_at": f.BASE_TIME,
        "content": {"t": 1},
        "content_sha256": version["content_sha256"],
        "extra": {},
        "source_event": {"source": "agents/copy", "id": "e-1", "time": f.BASE_TIME},
        "audit_state": "pending",
        "audit_attempts": 0,
        "feedback_count": 0,
        "archived": False,
        "approved": False,
    }


@pytest.mark.parametrize("batched", [False, True])
def test_the_same_event_three_times_is_one_version_and_one_revision(
    store: MemoryStore, batched: bool
) -> None:
    event = f.generated(C1, "a-1", "v-1")
    delivery = (
        send_batch(store, event, event, event) if batched else send(store, event, event, event)
    )
    assert list(store.version_records) == ["v-1"]
    assert delivery.revisions(C1) == [1]
    assert sum(c.duplicates for c in delivery.changes) == 2
    assert not delivery.rejections


def test_the_same_version_under_another_event_id_changes_nothing(store: MemoryStore) -> None:
    send(store, f.generated(C1, "a-1", "v-1", content={"t": 1}, id="e-1"))
    before = store.documents()
    delivery = send(store, f.generated(C1, "a-1", "v-1", content={"t": 1}, id="e-2"))
    assert delivery.snapshots == []
    assert not delivery.rejections
    after = store.documents()
    assert len(after["processed"]) == len(before["processed"]) + 1  # marked, nothing else
    after["processed"] = before["processed"]
    assert after == before


def test_the_same_version_with_other_content_is_a_version_conflict(store: MemoryStore) -> None:
    send(store, f.generated(C1, "a-1", "v-1", content={"t": 1}))
    before = store.snapshot(C1)
    delivery = send(store, f.generated(C1, "a-1", "v-1", content={"t": 2}))
    assert delivery.reasons() == ["version_conflict"]
    assert delivery.snapshots == []
    assert store.snapshot(C1) == before
    assert store.version_records["v-1"]["content"] == {"t": 1}


def test_the_same_version_for_another_artifact_is_a_version_conflict(store: MemoryStore) -> None:
    send(store, f.generated(C1, "a-1", "v-1", content={"t": 1}))
    delivery = send(store, f.generated(C1, "a-2", "v-1", content={"t": 1}))
    assert delivery.reasons() == ["version_conflict"]
    assert "a-2" not in store.artifacts


def test_a_version_of_another_campaign_is_a_conflict(store: MemoryStore) -> None:
    send(store, f.generated(C1, "a-1", "v-1", content={"t": 1}))
    delivery = send(store, f.generated(C2, "a-2", "v-1", content={"t": 1}))
    assert delivery.reasons() == ["version_conflict"]
    assert store.snapshot(C2) is None


def test_an_artifact_of_another_campaign_is_an_id_conflict(store: MemoryStore) -> None:
    send(store, f.generated(C1, "a-1", "v-1"))
    delivery = send(store, f.generated(C2, "a-1", "v-2"))
    assert delivery.reasons() == ["id_conflict"]
    assert "v-2" not in store.version_records
    assert store.artifacts["a-1"]["campaign_id"] == C1
    assert store.snapshot(C2) is None


def test_a_run_of_another_campaign_is_an_id_conflict(store: MemoryStore) -> None:
    send(store, f.run_started(C1, "r-1"))
    delivery = send(store, f.run_started(C2, "r-1"), f.generated(C2, "a-2", "v-2", run_id="r-1"))
    assert delivery.reasons() == ["id_conflict", "id_conflict"]
    assert store.runs["r-1"]["campaign_id"] == C1
    assert "v-2" not in store.version_records


def test_an_artifact_claimed_by_two_campaigns_in_one_batch_is_an_id_conflict(
    store: MemoryStore,
) -> None:
    """The first campaign to name an artifact in a batch owns it, though it is not stored yet."""
    delivery = send_batch(
        store,
        f.generated(C1, "a-1", "v-1"),
        f.generated(C2, "a-1", "v-2"),
        f.generated(C1, "a-1", "v-3"),
    )
    assert delivery.reasons() == ["id_conflict"]
    [rejection] = delivery.rejections
    assert rejection.inbound.event.campaign_id == C2
    assert C1 in rejection.detail
    assert "v-2" not in store.version_records
    assert [v["_id"] for v in versions_of(store, "a-1")] == ["v-1", "v-3"]
    assert store.artifacts["a-1"]["campaign_id"] == C1
    assert store.snapshot(C2) is None
    assert delivery.revisions(C1) == [1, 2]


def test_a_run_claimed_by_two_campaigns_in_one_batch_is_an_id_conflict(
    store: MemoryStore,
) -> None:
    delivery = send_batch(
        store,
        f.run_started(C1, "r-1"),
        f.run_started(C2, "r-1"),
        f.generated(C2, "a-2", "v-2", run_id="r-1"),
        f.run_completed(C1, "r-1"),
    )
    assert delivery.reasons() == ["id_conflict", "id_conflict"]
    assert all(r.inbound.event.campaign_id == C2 for r in delivery.rejections)
    assert store.runs["r-1"]["campaign_id"] == C1
    assert store.runs["r-1"]["status"] == "completed"
    assert "v-2" not in store.version_records
    assert store.snapshot(C2) is None
    assert delivery.revisions(C1) == [1, 2]


def test_a_run_first_named_by_an_artifact_event_in_a_batch_is_owned_by_its_campaign(
    store: MemoryStore,
) -> None:
    delivery = send_batch(
        store, f.generated(C1, "a-1", "v-1", run_id="r-1"), f.run_started(C2, "r-1")
    )
    assert delivery.reasons() == ["id_conflict"]
    assert store.runs["r-1"]["campaign_id"] == C1
    assert store.snapshot(C2) is None


def test_a_new_artifact_type_is_an_artifact_type_conflict(store: MemoryStore) -> None:
    send(store, f.generated(C1, "a-1", "v-1", artifact_type="copy"))
    delivery = send(store, f.generated(C1, "a-1", "v-2", artifact_type="visual_concept"))
    assert delivery.reasons() == ["artifact_type_conflict"]
    assert delivery.snapshots == []
    assert "v-2" not in store.version_records


def test_the_derived_version_id_comes_from_source_and_id(store: MemoryStore) -> None:
    event = f.generated(C1, "a-1", source="agents/copy", id="e-7")
    expected = derive_id("v", "11:agents/copye-7")  # the key: len(source), ":", source, id
    assert f.derived_version_id("agents/copy", "e-7") == expected
    send(store, event, event)
    assert list(store.version_records) == [expected]
    # another producer's event with the same id is another event, hence another version
    send(store, f.generated(C1, "a-1", source="agents/other", id="e-7"))
    assert versions_of(store, "a-1")[1]["_id"] == derive_id("v", "12:agents/othere-7")
    # and the derivation does not depend on the store
    other = MemoryStore()
    send(other, f.generated(C1, "a-1", source="agents/copy", id="e-7", content={"x": 1}))
    assert list(other.version_records) == [expected]


# ---- audits and the hold ---------------------------------------------------------------------


def test_an_audit_before_its_version_is_held(store: MemoryStore) -> None:
    send(store, f.generated(C1, "a-1", "v-0"))
    delivery = send(store, f.audited(C1, "v-1", "pass"))
    assert delivery.snapshots == []
    assert store.audit_reports == {}
    assert [h.version_id for h in store.held.values()] == ["v-1"]
    assert store.snapshot(C1)["revision"] == 1  # type: ignore[index]


def test_a_held_audit_is_attached_right_after_its_version_in_a_later_batch(
    store: MemoryStore,
) -> None:
    audit = f.audited(C1, "v-1", "pass")
    send(store, audit)
    assert store.snapshot(C1) is None
    assert len(store.held) == 1
    delivery = send(store, f.generated(C1, "a-1", "v-1"))
    assert delivery.revisions(C1) == [1, 2]
    first, second = delivery.snapshots
    assert artifact(first, "a-1")["active_version"]["audit_state"] == "pending"
    assert artifact(second, "a-1")["active_version"]["audit_state"] == "passed"
    assert second["counts"]["audit_reports"] == 1
    assert store.held == {}
    [report] = audits_of(store, "v-1")
    assert report["attempt"] == 1
    assert report["artifact_id"] == "a-1"
    # the held audit is processed: a redelivery is a duplicate
    assert send(store, audit).snapshots == []


def test_a_held_audit_is_attached_in_the_same_batch(store: MemoryStore) -> None:
    delivery = send_batch(
        store,
        f.audited(C1, "v-1", "fail"),
        f.created(C1, "Spring"),
        f.generated(C1, "a-1", "v-1"),
        f.status_changed(C1, "auditing"),
    )
    assert store.held == {}
    assert delivery.changes[0].held == []  # never stored: released within the batch
    assert delivery.revisions(C1) == [1, 2, 3, 4]
    assert [s["counts"]["audit_reports"] for s in delivery.snapshots] == [0, 0, 1, 1]
    assert delivery.snapshots[3]["status"] == "auditing"
    assert store.version_records["v-1"]["audit_state"] == "failed"


def test_held_audits_keep_their_arrival_order(store: MemoryStore) -> None:
    send(store, f.audited(C1, "v-1", "error", error="timeout"))
    send(store, f.audited(C1, "v-1", "conditional"))
    send_batch(store, f.audited(C1, "v-1", "pass"), f.generated(C1, "a-1", "v-1"))
    reports = audits_of(store, "v-1")
    assert [(r["attempt"], r["outcome"]) for r in reports] == [
        (1, "error"),
        (2, "conditional"),
        (3, "pass"),
    ]
    assert store.version_records["v-1"]["audit_attempts"] == 3
    assert store.version_records["v-1"]["audit_state"] == "passed"


def test_an_audit_error_then_a_retry(store: MemoryStore) -> None:
    send(store, f.generated(C1, "a-1", "v-1"))
    send(store, f.audited(C1, "v-1", "error", error="the auditor timed out"))
    assert artifact(store.snapshot(C1), "a-1")["active_version"]["audit_state"] == "unaudited"
    assert store.version_records["v-1"]["audit_state"] == "unaudited"
    send(store, f.audited(C1, "v-1", "pass", category_scores={"tone": {"score": 91.5}}))
    assert artifact(store.snapshot(C1), "a-1")["active_version"]["audit_state"] == "passed"
    first, second = audits_of(store, "v-1")
    assert (first["attempt"], first["outcome"], first["audit_state"]) == (1, "error", "unaudited")
    assert first["error"] == "the auditor timed out"
    assert (second["attempt"], second["outcome"], second["audit_state"]) == (2, "pass", "passed")
    assert second["category_scores"] == {"tone": {"score": 91.5}}
    assert store.snapshot(C1)["counts"]["audit_reports"] == 2  # type: ignore[index]
    assert store.campaign_states[C1].audit_outcomes == {"error": 1, "pass": 1}


def test_an_audit_of_an_older_version_leaves_the_active_one(store: MemoryStore) -> None:
    send(store, f.generated(C1, "a-1", "v-1"), f.generated(C1, "a-1", "v-2"))
    delivery = send(store, f.audited(C1, "v-1", "fail"))
    assert delivery.revisions(C1) == [3]
    active = artifact(store.snapshot(C1), "a-1")["active_version"]
    assert (active["version_id"], active["audit_state"]) == ("v-2", "pending")
    assert store.version_records["v-1"]["audit_state"] == "failed"


def test_an_audit_of_a_version_of_another_campaign_is_refused(store: MemoryStore) -> None:
    send(store, f.generated(C1, "a-1", "v-1"))
    delivery = send(store, f.audited(C2, "v-1", "pass"))
    assert delivery.reasons() == ["campaign_mismatch"]
    assert store.audit_reports == {}
    assert store.snapshot(C2) is None


# ---- feedback --------------------------------------------------------------------------------


def test_feedback_becomes_iteration_logs_numbered_per_version(store: MemoryStore) -> None:
    send(
        store,
        f.generated(C1, "a-1", "v-1"),
        f.generated(C1, "a-2", "v-9", artifact_type="visual_concept"),
    )
    send(
        store,
        f.feedback(C1, "a-1", "v-1", "shorter", id="fb-1", tags=["tone"], time=f.at(10)),
        f.feedback(C1, "a-2", "v-9", "bolder", id="fb-2", time=f.at(20)),
        f.feedback(C1, "a-1", "v-1", "warmer", id="fb-3", time=f.at(30)),
    )
    logs = store.iterations(C1)
    assert [(log["feedback_id"], log["version_id"], log["feedback_number"]) for log in logs] == [
        ("fb-1", "v-1", 1),
        ("fb-2", "v-9", 1),
        ("fb-3", "v-1", 2),
    ]
    assert all("iteration_number" not in log for log in logs)
    assert logs[0]["tags"] == ["tone"]
    assert logs[0]["version_number"] == 1
    assert logs[0]["feedback_text"] == "shorter"
    assert logs[0]["submitted_at"] == f.at(10)
    assert store.version_records["v-1"]["feedback_count"] == 2
    assert store.version_records["v-9"]["feedback_count"] == 1
    assert store.versions["v-1"].feedback_count == 2
    assert store.snapshot(C1)["counts"]["iteration_logs"] == 3  # type: ignore[index]


def test_iterations_are_listed_by_submission_time_then_id(store: MemoryStore) -> None:
    """`submitted_at` (default: the event's time) then `_id`, as `MongoStore.iteration_page`
    sorts them; `feedback_number` keeps the order of arrival per version."""
    send(store, f.generated(C1, "a-1", "v-1"), f.generated(C1, "a-2", "v-2"))
    send(
        store,
        f.feedback(C1, "a-1", "v-1", "late", id="fb-1", submitted_at=iso_z(f.at(50))),
        f.feedback(C1, "a-2", "v-2", "early", id="fb-2", time=f.at(10)),
        f.feedback(C1, "a-1", "v-1", "tie", id="fb-3", time=f.at(50)),
    )
    by_feedback = {log["feedback_id"]: log for log in store.iteration_logs.values()}
    assert {k: log["submitted_at"] for k, log in by_feedback.items()} == {
        "fb-1": f.at(50),
        "fb-2": f.at(10),
        "fb-3": f.at(50),
    }
    tied = sorted(("fb-1", "fb-3"), key=lambda k: by_feedback[k]["_id"])
    assert [log["feedback_id"] for log in store.iterations(C1)] == ["fb-2", *tied]
    assert {k: log["feedback_number"] for k, log in by_feedback.items()} == {
        "fb-1": 1,
        "fb-2": 1,
        "fb-3": 2,
    }


def test_feedback_naming_another_artifact_is_a_version_mismatch(store: MemoryStore) -> None:
    send(store, f.generated(C1, "a-1", "v-1"), f.generated(C1, "a-2", "v-2"))
    delivery = send(store, f.feedback(C1, "a-2", "v-1"))
    assert delivery.reasons() == ["version_mismatch"]
    assert store.iteration_logs == {}
    assert delivery.snapshots == []


def test_feedback_before_its_version_is_held_then_logged(store: MemoryStore) -> None:
    send(store, f.feedback(C1, "a-1", "v-1", "shorter"))
    assert store.iteration_logs == {}
    delivery = send(store, f.generated(C1, "a-1", "v-1"))
    assert delivery.revisions(C1) == [1, 2]
    [log] = store.iteration_logs.values()
    assert log["feedback_number"] == 1
    assert store.version_records["v-1"]["feedback_count"] == 1


# ---- approval and archiving --------------------------------------------------------------------


def test_approving_twice_is_one_revision(store: MemoryStore) -> None:
    send(store, f.generated(C1, "a-1", "v-1"))
    delivery = send(
        store,
        f.approved(C1, "v-1", approved_by="ana", time=f.at(30)),
        f.approved(C1, "v-1", approved_by="bob"),
    )
    assert delivery.revisions(C1) == [2]
    assert artifact(store.snapshot(C1), "a-1")["active_version"]["approved"] is True
    version = store.version_records["v-1"]
    assert (version["approved"], version["approved_by"], version["approved_at"]) == (
        True,
        "ana",
        f.at(30),
    )
    assert store.snapshot(C1)["counts"]["approved_versions"] == 1  # type: ignore[index]


def test_approval_in_the_batch_that_creates_the_version(store: MemoryStore) -> None:
    send_batch(store, f.approved(C1, "v-1"), f.generated(C1, "a-1", "v-1"))
    assert store.version_records["v-1"]["approved"] is True
    assert "approved_at" in store.version_records["v-1"]
    assert artifact(store.snapshot(C1), "a-1")["active_version"]["approved"] is True


def test_an_older_approved_version_shows_once_it_is_active_again(store: MemoryStore) -> None:
    send(
        store,
        f.generated(C1, "a-1", "v-1"),
        f.audited(C1, "v-1", "pass"),
        f.generated(C1, "a-1", "v-2"),
        f.approved(C1, "v-1"),
    )
    assert artifact(store.snapshot(C1), "a-1")["active_version"]["approved"] is False
    send(store, f.archived(C1, "v-2"))
    active = artifact(store.snapshot(C1), "a-1")["active_version"]
    assert active == {
        "version_id": "v-1",
        "version_number": 1,
        "created_at": iso_z(f.BASE_TIME),
        "audit_state": "passed",
        "approved": True,
    }


def generate_five(store: MemoryStore) -> None:
    send(store, *[f.generated(C1, "a-1", f"v-{n}", content={"n": n}) for n in range(1, 6)])


def test_archiving_the_active_version_activates_the_next_highest(store: MemoryStore) -> None:
    generate_five(store)
    delivery = send(store, f.archived(C1, "v-5"))
    assert delivery.revisions(C1) == [6]
    assert active_id(store, C1, "a-1") == "v-4"
    assert store.version_records["v-5"]["archived"] is True
    assert "archived_at" in store.version_records["v-5"]
    snap = store.snapshot(C1)
    assert snap is not None
    assert artifact(snap, "a-1")["version_count"] == 5
    assert snap["counts"]["archived_versions"] == 1
    assert snap["counts"]["versions"] == 5


def test_archiving_a_version_that_is_not_active_keeps_the_active_one(store: MemoryStore) -> None:
    generate_five(store)
    send(store, f.archived(C1, "v-2"))
    assert active_id(store, C1, "a-1") == "v-5"
    send(store, f.archived(C1, "v-5"), f.archived(C1, "v-4"), f.archived(C1, "v-3"))
    assert active_id(store, C1, "a-1") == "v-1"


def test_archiving_several_in_one_batch_widens_the_unarchived_lookup(store: MemoryStore) -> None:
    generate_five(store)
    delivery = send_batch(
        store, f.archived(C1, "v-5"), f.archived(C1, "v-4"), f.archived(C1, "v-3")
    )
    assert active_id(store, C1, "a-1") == "v-2"
    lookups = [limit for kind, key, limit in delivery.missing if kind == "unarchived"]
    assert lookups == [2, 3, 4]  # each archive asks for one more than the batch archived
    assert delivery.revisions(C1) == [6, 7, 8]
    assert [artifact(s, "a-1")["active_version"]["version_id"] for s in delivery.snapshots] == [
        "v-4",
        "v-3",
        "v-2",
    ]


def test_archiving_every_version_leaves_no_active_version(store: MemoryStore) -> None:
    generate_five(store)
    send_batch(store, *[f.archived(C1, f"v-{n}") for n in (5, 3, 4, 1, 2)])
    assert artifact(store.snapshot(C1), "a-1")["active_version"] is None
    # the versions stay readable, and a new one becomes active
    assert len(store.version_records) == 5
    send(store, f.generated(C1, "a-1", "v-6"))
    assert active_id(store, C1, "a-1") == "v-6"
    assert store.version_records["v-6"]["version_number"] == 6


def test_archiving_versions_created_in_the_same_batch(store: MemoryStore) -> None:
    send_batch(
        store,
        f.generated(C1, "a-1", "v-1"),
        f.generated(C1, "a-1", "v-2"),
        f.archived(C1, "v-2"),
    )
    assert active_id(store, C1, "a-1") == "v-1"
    send_batch(store, f.generated(C1, "a-1", "v-3"), f.archived(C1, "v-3"), f.archived(C1, "v-1"))
    assert artifact(store.snapshot(C1), "a-1")["active_version"] is None


def test_archiving_twice_is_one_revision(store: MemoryStore) -> None:
    generate_five(store)
    delivery = send(store, f.archived(C1, "v-5"), f.archived(C1, "v-5"))
    assert delivery.revisions(C1) == [6]


# ---- campaign lifecycle ----------------------------------------------------------------------


def test_delete_and_restore_toggle_and_repeats_change_nothing(store: MemoryStore) -> None:
    send(store, f.created(C1, "Spring"))
    delivery = send(
        store,
        f.delete_requested(C1, time=f.at(60)),
        f.delete_requested(C1),
        f.restore_requested(C1),
        f.restore_requested(C1),
        f.delete_requested(C1, time=f.at(120)),
    )
    assert delivery.revisions(C1) == [2, 3, 4]
    assert [s["deleted"] for s in delivery.snapshots] == [True, False, True]
    assert store.campaigns[C1]["deleted"] is True
    assert store.campaigns[C1]["deleted_at"] == f.at(120)
    assert store.campaign_states[C1].deleted_at == f.at(120)
    send(store, f.restore_requested(C1))
    assert store.campaigns[C1]["deleted_at"] is None


def test_the_same_status_again_is_no_revision(store: MemoryStore) -> None:
    delivery = send(
        store,
        f.status_changed(C1, "generating"),
        f.status_changed(C1, "generating"),
        f.status_changed(C1, "auditing"),
    )
    assert delivery.revisions(C1) == [1, 2]
    assert store.campaigns[C1]["status"] == "auditing"


def test_campaign_created_fills_in_name_and_brief(store: MemoryStore) -> None:
    send(store, f.generated(C1, "a-1", "v-1"))
    assert store.snapshot(C1)["name"] is None  # type: ignore[index]
    delivery = send(
        store,
        f.created(C1, "Spring", brief={"audience": "students"}),
        f.created(C1, "Spring", brief={"audience": "students"}),
        f.created(C1, "Spring launch"),
    )
    assert delivery.revisions(C1) == [2, 3]
    assert store.campaigns[C1]["name"] == "Spring launch"
    assert store.campaigns[C1]["brief"] is None
    assert store.campaigns[C1]["campaign_id"] == C1


@pytest.mark.parametrize("first", ["status_draft", "restore"])
def test_an_event_that_changes_nothing_does_not_bring_a_campaign_into_being(
    store: MemoryStore, first: str
) -> None:
    """Decided behaviour, not a bug: status-changed to "draft" (the status a new campaign has
    anyway) or restore-requested (it is not deleted) for an unknown campaign stores and
    publishes nothing. Contract 9 says an event that changes nothing publishes nothing new,
    and it keeps the final state independent of the interleaving of topics: were the campaign
    to come into being here, a restore-requested first on the lifecycle topic would count one
    revision more than the same restore-requested after an artifact event."""
    event = f.status_changed(C1, "draft") if first == "status_draft" else f.restore_requested(C1)
    delivery = send(store, event)
    assert delivery.snapshots == []
    assert delivery.rejections == []
    assert store.snapshot(C1) is None
    assert C1 not in store.campaigns
    assert [key for key, _ in delivery.changes[0].processed] == [event.event.key]  # marked
    # the next event that changes something brings it into being, at revision 1
    assert send(store, f.created(C1, "Spring")).revisions(C1) == [1]
    # and the same final state whichever topic came first
    generated = f.generated(C2, "a-1", "v-1")
    lifecycle = f.restore_requested(C2)
    first_lifecycle, first_artifact = MemoryStore(), MemoryStore()
    send(first_lifecycle, lifecycle, generated)
    send(first_artifact, generated, lifecycle)
    assert first_lifecycle.snapshot(C2) == first_artifact.snapshot(C2)
    assert first_lifecycle.documents() == first_artifact.documents()
    assert first_lifecycle.snapshot(C2)["revision"] == 1  # type: ignore[index]


# ---- runs ------------------------------------------------------------------------------------


def test_a_run_starts_and_completes(store: MemoryStore) -> None:
    delivery = send(
        store,
        f.run_started(C1, "r-1", execution_mode="parallel", time=f.at(10)),
        f.run_started(C1, "r-1", execution_mode="parallel", time=f.at(20)),  # nothing new
        f.run_completed(C1, "r-1", "failed", error="agent crashed", time=f.at(30)),
        f.run_completed(C1, "r-1", "failed", error="agent crashed", time=f.at(30)),  # nothing new
    )
    assert delivery.revisions(C1) == [1, 2]
    [run] = store.snapshot(C1)["runs"]  # type: ignore[index]
    assert run == {
        "run_id": "r-1",
        "status": "failed",
        "execution_mode": "parallel",
        "started_at": iso_z(f.at(10)),
        "completed_at": iso_z(f.at(30)),
        "version_count": 0,
    }
    assert store.runs["r-1"]["error"] == "agent crashed"
    assert store.runs["r-1"]["campaign_id"] == C1


def test_an_earlier_start_moves_started_at(store: MemoryStore) -> None:
    send(store, f.run_started(C1, "r-1", time=f.at(20)))
    delivery = send(store, f.run_started(C1, "r-1", time=f.at(10)))
    assert delivery.revisions(C1) == [2]
    assert store.runs["r-1"]["started_at"] == f.at(10)


def test_an_artifact_event_with_a_run_id_brings_the_run_into_being(store: MemoryStore) -> None:
    send(
        store,
        f.generated(C1, "a-1", "v-1", run_id="r-1"),
        f.generated(C1, "a-2", "v-2", run_id="r-1"),
    )
    [run] = store.snapshot(C1)["runs"]  # type: ignore[index]
    assert (run["run_id"], run["status"], run["started_at"], run["version_count"]) == (
        "r-1",
        "running",
        None,
        2,
    )
    assert store.runs["r-1"]["version_count"] == 2
    delivery = send(store, f.run_started(C1, "r-1", time=f.at(5)))
    assert delivery.revisions(C1) == [3]
    assert store.snapshot(C1)["runs"][0]["started_at"] == iso_z(f.at(5))  # type: ignore[index]


# ---- revisions, snapshots and times --------------------------------------------------------------


def test_every_changing_event_moves_the_revision_by_one(store: MemoryStore) -> None:
    events = [
        (f.created(C1, "Spring"), True),
        (f.created(C2, "Autumn"), True),
        (f.status_changed(C1, "generating"), True),
        (f.run_started(C1, "r-1"), True),
        (f.generated(C1, "a-1", "v-1", run_id="r-1"), True),
        (f.audited(C1, "v-2", "pass"), False),  # held
        (f.generated(C1, "a-1", "v-2", run_id="r-1"), True),  # + the held audit: True below
        (f.generated(C2, "b-1", "w-1"), True),
        (f.feedback(C1, "a-1", "v-1", "longer"), True),
        (f.approved(C1, "v-2"), True),
        (f.approved(C1, "v-2"), False),
        (f.status_changed(C1, "generating"), False),
        (f.archived(C1, "v-2"), True),
        (f.run_completed(C1, "r-1"), True),
        (f.delete_requested(C2), True),
        (f.restore_requested(C1), False),
    ]
    store_batched = MemoryStore()
    for batched, target in ((False, store), (True, store_batched)):
        delivery = (
            send_batch(target, *[e for e, _ in events])
            if batched
            else send(target, *[e for e, _ in events])
        )
        expected_c1 = sum(changes for e, changes in events if e.event.campaign_id == C1) + 1
        expected_c2 = sum(changes for e, changes in events if e.event.campaign_id == C2)
        assert delivery.revisions(C1) == list(range(1, expected_c1 + 1))
        assert delivery.revisions(C2) == list(range(1, expected_c2 + 1))
        assert_consecutive(delivery, target)
    assert store.documents() == store_batched.documents()


def test_snapshot_artifacts_are_ordered_by_artifact_id(store: MemoryStore) -> None:
    ids = ["b-2", "a-10", "Z-1", "a-9", "a.1", "a-1"]
    send_batch(store, *[f.generated(C1, artifact_id, f"v-{artifact_id}") for artifact_id in ids])
    snap = store.snapshot(C1)
    assert [a["artifact_id"] for a in snap["artifacts"]] == sorted(ids)  # type: ignore[index]


def test_snapshot_shape(store: MemoryStore) -> None:
    send(
        store,
        f.created(C1, "Spring launch", time=f.at(0)),
        f.status_changed(C1, "auditing", time=f.at(1)),
        f.run_started(C1, "r-1", time=f.at(2)),
        f.generated(C1, "a-1", "v-1", run_id="r-1", time=f.at(3)),
        f.audited(C1, "v-1", "pass", time=f.at(4)),
    )
    assert store.snapshot(C1) == {
        "campaign_id": C1,
        "revision": 5,
        "name": "Spring launch",
        "status": "auditing",
        "deleted": False,
        "created_at": iso_z(f.at(0)),
        "updated_at": iso_z(f.at(4)),
        "artifacts": [
            {
                "artifact_id": "a-1",
                "artifact_type": "copy",
                "version_count": 1,
                "active_version": {
                    "version_id": "v-1",
                    "version_number": 1,
                    "created_at": iso_z(f.at(3)),
                    "audit_state": "passed",
                    "approved": False,
                },
            }
        ],
        "runs": [
            {
                "run_id": "r-1",
                "status": "running",
                "execution_mode": None,
                "started_at": iso_z(f.at(2)),
                "completed_at": None,
                "version_count": 1,
            }
        ],
        "counts": {
            "versions": 1,
            "audit_reports": 1,
            "iteration_logs": 0,
            "archived_versions": 0,
            "approved_versions": 0,
        },
    }


def test_created_and_updated_at_are_the_min_and_max_of_event_times(store: MemoryStore) -> None:
    times = [f.at(50), f.at(10), f.at(90), f.at(30)]
    send(
        store,
        f.generated(C1, "a-1", "v-1", time=times[0]),
        f.status_changed(C1, "generating", time=times[1]),
        f.created(C1, "Spring", time=times[2]),
        f.audited(C1, "v-1", time=times[3]),
    )
    snap = store.snapshot(C1)
    assert snap is not None
    assert (snap["created_at"], snap["updated_at"]) == (iso_z(f.at(10)), iso_z(f.at(90)))
    assert store.campaigns[C1]["created_at"] == f.at(10)
    assert store.campaigns[C1]["updated_at"] == f.at(90)
    # an event that changes nothing does not move them
    send(store, f.status_changed(C1, "generating", time=f.at(500)))
    assert store.snapshot(C1)["updated_at"] == iso_z(f.at(90))  # type: ignore[index]


def test_the_batch_time_never_leaks_into_campaign_times(store: MemoryStore) -> None:
    send(store, f.status_changed(C1, "generating", time=f.at(7)))
    snap = store.snapshot(C1)
    assert snap is not None
    assert snap["created_at"] == snap["updated_at"] == iso_z(f.at(7))


def test_a_stored_campaign_state_survives_the_round_trip(store: MemoryStore) -> None:
    send(
        store,
        f.created(C1, "Spring", brief={"k": [1, 2]}),
        f.run_started(C1, "r-1", execution_mode="sequential"),
        f.generated(C1, "a-1", "v-1", run_id="r-1", generated_at=iso_z(f.at(-5))),
        f.audited(C1, "v-1", "conditional"),
        f.run_completed(C1, "r-1", "failed", error="boom"),
        f.delete_requested(C1, time=f.at(99)),
    )
    state = store.campaign_states[C1]
    assert CampaignState.restore(state.snapshot(), state.private()) == state


def test_held_events_across_batches_and_campaigns_release_in_seq_order(store: MemoryStore) -> None:
    send(store, f.approved(C1, "v-1", time=f.at(1)))
    send(store, f.archived(C1, "v-1", time=f.at(2)))
    send(store, f.feedback(C1, "a-1", "v-1", time=f.at(3)))
    delivery = send(store, f.generated(C1, "a-1", "v-1", time=f.at(0)))
    assert delivery.revisions(C1) == [1, 2, 3, 4]
    states = [
        (
            s["counts"]["approved_versions"],
            s["counts"]["archived_versions"],
            s["counts"]["iteration_logs"],
        )
        for s in delivery.snapshots
    ]
    assert states == [(0, 0, 0), (1, 0, 0), (1, 1, 0), (1, 1, 1)]
    assert artifact(store.snapshot(C1), "a-1")["active_version"] is None
    assert store.snapshot(C1)["updated_at"] == iso_z(f.at(3))  # type: ignore[index]


def test_redelivering_a_whole_history_changes_nothing(store: MemoryStore) -> None:
    events = [
        f.created(C1, "Spring"),
        f.generated(C1, "a-1", "v-1"),
        f.audited(C1, "v-1", "error"),
        f.audited(C1, "v-1", "pass"),
        f.feedback(C1, "a-1", "v-1"),
        f.generated(C1, "a-1"),
        f.archived(C1, "v-1"),
        f.approved(C1, "v-1"),
        f.delete_requested(C1),
    ]
    send(store, *events)
    before = store.documents()
    delivery = deliver(store, [events, events[::-1], events[3:]])
    assert delivery.snapshots == []
    assert delivery.rejections == []
    assert store.documents() == before


def test_a_version_created_then_updated_in_later_batches_keeps_time_types(
    store: MemoryStore,
) -> None:
    send(store, f.generated(C1, "a-1", "v-1", time=f.at(0)))
    send(store, f.approved(C1, "v-1", time=f.at(0) + timedelta(hours=1)))
    assert store.version_records["v-1"]["approved_at"] == f.at(3600)


@pytest.mark.parametrize("batched", [False, True])
def test_feedback_numbers_do_not_depend_on_the_interleaving_of_topics(batched: bool) -> None:
    """Feedback is numbered per version, and a version's feedback all waits for it or all
    applies, in topic order: so feedback held for a late version gets the same numbers as
    when the version came first."""
    v1 = f.generated(C1, "a-1", "v-1")
    v2 = f.generated(C1, "a-1", "v-2")
    about_v2 = f.feedback(C1, "a-1", "v-2", "first note", id="fb-1")
    about_v1 = f.feedback(C1, "a-1", "v-1", "second note", id="fb-2")
    about_v2_again = f.feedback(C1, "a-1", "v-2", "third note", id="fb-3")

    def stored(*order: Inbound) -> MemoryStore:
        target = MemoryStore()
        if batched:
            send_batch(target, *order)
        else:
            send(target, *order)
        return target

    def numbers(target: MemoryStore) -> dict[str, int]:
        return {
            log["feedback_id"]: log["feedback_number"] for log in target.iteration_logs.values()
        }

    in_order = stored(v1, v2, about_v2, about_v1, about_v2_again)
    assert numbers(in_order) == {"fb-1": 1, "fb-2": 1, "fb-3": 2}
    # the same per-topic orders (v1 before v2; fb-1, fb-2, fb-3), the topics interleaved
    for order in (
        (v1, about_v2, about_v1, about_v2_again, v2),
        (about_v2, about_v1, v1, about_v2_again, v2),
        (about_v2, v1, about_v1, v2, about_v2_again),
    ):
        interleaved = stored(*order)
        assert numbers(interleaved) == numbers(in_order), order
        assert interleaved.iteration_logs == in_order.iteration_logs
        assert interleaved.version_records == in_order.version_records
        assert interleaved.snapshot(C1) == in_order.snapshot(C1)


def test_a_held_event_of_another_campaign_is_refused_when_its_version_arrives(
    store: MemoryStore,
) -> None:
    send(store, f.approved(C2, "v-1"))
    delivery = send(store, f.generated(C1, "a-1", "v-1"))
    assert ("campaign", C2, 0) in delivery.missing  # not prefetched: loaded on demand
    assert delivery.reasons() == ["campaign_mismatch"]
    assert delivery.revisions(C1) == [1]
    assert store.held == {}
    assert store.snapshot(C2) is None
    assert store.version_records["v-1"]["approved"] is False


@pytest.mark.parametrize(
    ("first_pair", "second_pair"),
    [
        (("agents\x1fx", "1"), ("agents", "x\x1f1")),  # shared a key with a separator
        (("ab", "c"), ("a", "bc")),  # would share one if simply joined
        (("1:a", "b"), ("1", ":ab")),
        (("2:ab", "c"), ("2", ":abc")),
    ],
)
def test_distinct_source_and_id_pairs_are_distinct_events(
    store: MemoryStore, first_pair: tuple[str, str], second_pair: tuple[str, str]
) -> None:
    first = f.created(C1, "Spring", source=first_pair[0], id=first_pair[1])
    second = f.status_changed(C1, "generating", source=second_pair[0], id=second_pair[1])
    assert (first.event.source, first.event.id) != (second.event.source, second.event.id)
    assert first.event.key != second.event.key
    assert first.event.key == f.key_of(*first_pair)
    delivery = send(store, first, second)
    assert delivery.revisions(C1) == [1, 2]
    assert store.snapshot(C1)["status"] == "generating"  # type: ignore[index]
