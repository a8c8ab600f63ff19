"""Property: any arrival order that keeps each topic's per-campaign order, with duplicates and
any batch sizes, leaves the same stored state and the same final snapshots as one delivery of
each event in order (contract 1, 4, 5, 9; ledger.py's module docstring)."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.domain.ledger import Inbound
from service.domain.state import CampaignState
from tests.events import iso_z
from tests.unit import factories as f
from tests.unit.memory_store import Delivery, MemoryStore, deliver, one_by_one

ARTIFACT_TYPES = ("copy", "short_copy", "visual_concept")
STATUSES = ("draft", "generating", "generated", "auditing", "completed", "cancelled")
OUTCOMES = ("pass", "conditional", "fail", "error")
SOURCES = ("agents/copy", "agents/visual", "dashboard")
ACTIONS = (
    *["generate"] * 6,
    *["audit"] * 4,
    *["feedback"] * 3,
    *["approve"] * 2,
    *["archive"] * 2,
    "created",
    "status",
    "status",
    "run_started",
    "run_completed",
    "delete",
    "restore",
    "same_version_again",
)


@dataclass
class CampaignScript:
    campaign_id: str
    artifacts: dict[str, str] = field(default_factory=dict)  # artifact id -> type
    versions: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)


def scenario(rnd: random.Random) -> list[Inbound]:
    """A random valid history for 2-3 campaigns, in an order where every version-bound event
    comes after its version (the canonical order)."""
    scripts = [CampaignScript(f"c-{n}") for n in range(rnd.randint(2, 3))]
    events: list[Inbound] = []
    for step in range(rnd.randint(6, 40)):
        script = rnd.choice(scripts)
        cid = script.campaign_id
        envelope: dict[str, Any] = {
            "source": rnd.choice(SOURCES),
            "id": f"{cid}.e{step}",
            "time": f.at(rnd.randint(0, 3600)),
        }
        action = rnd.choice(ACTIONS)
        if not script.versions and action in {
            "audit",
            "feedback",
            "approve",
            "archive",
            "same_version_again",
        }:
            action = "generate"
        if action == "generate":
            artifact_id = f"{cid}.a{rnd.randint(0, 2)}"
            artifact_type = script.artifacts.setdefault(artifact_id, rnd.choice(ARTIFACT_TYPES))
            content = {"text": f"draft {step}", "n": rnd.randint(0, 3)}
            extra: dict[str, Any] = {}
            if rnd.random() < 0.3:
                extra["run_id"] = f"{cid}.r{rnd.randint(0, 1)}"
            if rnd.random() < 0.5:
                version_id = f"{cid}.v{step}"
                extra["version_id"] = version_id
            else:
                version_id = f.derived_version_id(envelope["source"], envelope["id"])
            if rnd.random() < 0.3:
                extra["generated_at"] = iso_z(f.at(rnd.randint(0, 3600)))
            events.append(
                f.generated(
                    cid,
                    artifact_id,
                    artifact_type=artifact_type,
                    content=content,
                    **extra,
                    **envelope,
                )
            )
            script.versions.append((artifact_id, version_id, content))
        elif action == "same_version_again":
            artifact_id, version_id, content = rnd.choice(script.versions)
            events.append(
                f.generated(
                    cid,
                    artifact_id,
                    version_id,
                    artifact_type=script.artifacts[artifact_id],
                    content=content,
                    **envelope,
                )
            )
        elif action == "audit":
            _, version_id, _ = rnd.choice(script.versions)
            outcome = rnd.choice(OUTCOMES)
            extra = {"error": "auditor timed out"} if outcome == "error" else {}
            events.append(f.audited(cid, version_id, outcome, **extra, **envelope))
        elif action == "feedback":
            artifact_id, version_id, _ = rnd.choice(script.versions)
            events.append(f.feedback(cid, artifact_id, version_id, f"note {step}", **envelope))
        elif action == "approve":
            events.append(f.approved(cid, rnd.choice(script.versions)[1], **envelope))
        elif action == "archive":
            events.append(f.archived(cid, rnd.choice(script.versions)[1], **envelope))
        elif action == "created":
            name = rnd.choice(("Spring", "Spring launch"))
            brief = rnd.choice((None, {"audience": "students"}))
            events.append(f.created(cid, name, **({"brief": brief} if brief else {}), **envelope))
        elif action == "status":
            events.append(f.status_changed(cid, rnd.choice(STATUSES), **envelope))
        elif action == "run_started":
            mode = rnd.choice((None, "parallel", "sequential"))
            extra = {"execution_mode": mode} if mode else {}
            events.append(f.run_started(cid, f"{cid}.r{rnd.randint(0, 1)}", **extra, **envelope))
        elif action == "run_completed":
            status = rnd.choice(("completed", "failed", "cancelled"))
            extra = {"error": "boom"} if status == "failed" else {}
            events.append(
                f.run_completed(cid, f"{cid}.r{rnd.randint(0, 1)}", status, **extra, **envelope)
            )
        elif action == "delete":
            events.append(f.delete_requested(cid, **envelope))
        elif action == "restore":
            events.append(f.restore_requested(cid, **envelope))
    return events


def stream_of(item: Inbound) -> tuple[str, str]:
    return item.record.topic, item.event.campaign_id


def shuffled(rnd: random.Random, events: list[Inbound]) -> list[list[Inbound]]:
    """A random interleaving keeping each (topic, campaign) stream in order, with duplicates
    inserted after their original, cut into random batches."""
    streams: dict[tuple[str, str], list[Inbound]] = defaultdict(list)
    for item in events:
        streams[stream_of(item)].append(item)
    queues = [list(reversed(stream)) for stream in streams.values()]
    order: list[Inbound] = []
    while queues:
        queue = rnd.choice(queues)
        order.append(queue.pop())
        if not queue:
            queues.remove(queue)
    for _ in range(rnd.randint(0, len(order))):
        index = rnd.randrange(len(order))
        order.insert(rnd.randint(index + 1, len(order)), order[index])
    batches = []
    while order:
        size = rnd.randint(1, 7)
        batches.append(order[:size])
        del order[:size]
    return batches


# ---- checks --------------------------------------------------------------------------------------


def check_published(delivery: Delivery, store: MemoryStore) -> None:
    for campaign_id, state in store.campaign_states.items():
        revisions = delivery.revisions(campaign_id)
        assert revisions == list(range(1, len(revisions) + 1)), (campaign_id, revisions)
        assert revisions[-1] == state.revision
        assert delivery.last(campaign_id) == state.snapshot()
    assert {s["campaign_id"] for s in delivery.snapshots} == set(store.campaign_states)


def check_store(store: MemoryStore) -> None:
    """Invariants of one store: no orphans, gapless numbers, snapshots agreeing with documents."""
    assert store.held == {}, "every version was delivered, so nothing may stay held"
    versions = store.version_records
    for collection in (store.audit_reports, store.iteration_logs):
        for doc in collection.values():
            assert doc["version_id"] in versions, f"orphan {doc['_id']} of {doc['version_id']}"
            assert doc["campaign_id"] == versions[doc["version_id"]]["campaign_id"]
    by_artifact: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for doc in versions.values():
        by_artifact[doc["artifact_id"]].append(doc)
    for artifact_id, docs in by_artifact.items():
        numbers = sorted(doc["version_number"] for doc in docs)
        assert numbers == list(range(1, len(docs) + 1)), (artifact_id, numbers)
    attempts: dict[str, list[int]] = defaultdict(list)
    for doc in store.audit_reports.values():
        attempts[doc["version_id"]].append(doc["attempt"])
    for version_id, found in attempts.items():
        assert sorted(found) == list(range(1, len(found) + 1)), (version_id, found)
        assert versions[version_id]["audit_attempts"] == len(found)
    feedback: dict[str, list[int]] = defaultdict(list)
    iterations: dict[str, int] = defaultdict(int)
    for doc in store.iteration_logs.values():
        assert "iteration_number" not in doc
        feedback[doc["version_id"]].append(doc["feedback_number"])
        iterations[doc["campaign_id"]] += 1
    for version_id, found in feedback.items():
        assert sorted(found) == list(range(1, len(found) + 1)), (version_id, found)
    for version_id, doc in versions.items():
        assert doc["feedback_count"] == len(feedback.get(version_id, [])), version_id
        assert store.versions[version_id].feedback_count == doc["feedback_count"], version_id

    for campaign_id, state in store.campaign_states.items():
        assert CampaignState.restore(state.snapshot(), state.private()) == state
        snap = state.snapshot()
        mine = [v for v in versions.values() if v["campaign_id"] == campaign_id]
        reports = [a for a in store.audit_reports.values() if a["campaign_id"] == campaign_id]
        assert snap["counts"] == {
            "versions": len(mine),
            "audit_reports": len(reports),
            "iteration_logs": iterations[campaign_id],
            "archived_versions": sum(v["archived"] for v in mine),
            "approved_versions": sum(v["approved"] for v in mine),
        }
        outcomes: dict[str, int] = defaultdict(int)
        for report in reports:
            outcomes[report["outcome"]] += 1
        assert state.audit_outcomes == outcomes
        for item in snap["artifacts"]:
            docs = by_artifact[item["artifact_id"]]
            assert item["version_count"] == len(docs)
            visible = [v for v in docs if not v["archived"]]
            top = max(visible, key=lambda v: v["version_number"], default=None)
            expected = (
                None
                if top is None
                else {
                    "version_id": top["_id"],
                    "version_number": top["version_number"],
                    "created_at": iso_z(top["created_at"]),
                    "audit_state": top["audit_state"],
                    "approved": top["approved"],
                }
            )
            assert item["active_version"] == expected, item["artifact_id"]
        for run in snap["runs"]:
            assert store.runs[run["run_id"]]["campaign_id"] == campaign_id
            made = sum(v.get("run_id") == run["run_id"] for v in mine)
            assert run["version_count"] == made
        assert store.campaigns[campaign_id]["revision"] == state.revision


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.randoms(use_true_random=False), st.randoms(use_true_random=False))
def test_any_order_per_topic_and_campaign_gives_the_same_ledger(
    make: random.Random, mix: random.Random
) -> None:
    events = scenario(make)

    canonical = MemoryStore()
    a = deliver(canonical, one_by_one(events))
    mixed = MemoryStore()
    b = deliver(mixed, shuffled(mix, events))

    assert a.rejections == [] and b.rejections == []
    check_store(canonical)
    check_store(mixed)
    check_published(a, canonical)
    check_published(b, mixed)
    for campaign_id in canonical.campaign_states:
        assert a.last(campaign_id) == b.last(campaign_id), campaign_id
    # everything stored, iteration logs and their feedback numbers included
    expected, found = canonical.documents(), mixed.documents()
    for name in expected:
        assert expected[name] == found[name], name

    # and everything once more, in one batch, changes nothing at all
    before = mixed.documents()
    again = deliver(mixed, [events[::-1]])
    assert again.snapshots == [] and again.rejections == []
    assert mixed.documents() == before
