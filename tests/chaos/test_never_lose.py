"""Never lose, never duplicate, never stall: the real service under crashes, restarts, replays
and scaling, judged only from outside (MongoDB documents, the snapshot topic, HTTP).

Every test sends a mixed stream (tests/chaos/processes.py: `MixedStream`) to a `python -m
service serve` subprocess and compares what comes out with `Model`, an independent rendering
of the contract's rules over the same events:

- every event's effect is stored exactly once: each version once, numbered 1..n per artifact in
  the order the artifact topic carries them; one audit report per audit event, attempts 1..k
  per version in audit-topic order; one iteration log per feedback event; one processed mark
  per distinct event (applied or held);
- no audit report or iteration log without its version;
- per campaign the snapshot topic carries every revision 1..N, N being the model's count of
  changes; a revision published again carries the same snapshot; a new revision never comes
  before a lower one. After a SIGKILL the outbox may send the last revisions again (5, 6, 5,
  6, 7: allowed, "after a crash it may be published again"), so the crash test checks the
  order of first appearances; without a crash the whole sequence must be non-decreasing;
- the last revision equals the model's snapshot, GET /campaigns/{id}/snapshot, and a snapshot
  recomputed from the stored documents.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from dev.servers.kafka import KafkaServer
from dev.servers.mongo import MongoServer
from service.adapters import mongo_schema as cols
from tests.chaos.processes import (
    Deployment,
    KafkaProbe,
    MixedStream,
    Model,
    Outgoing,
    Sender,
    ServiceProcess,
    iso,
    read_topic,
    reset_group_to_earliest,
)
from tests.events import cloud_event

Factory = Callable[[str], ServiceProcess]


# =========================================================================== waiting


async def settle(
    deployment: Deployment,
    processes: Sequence[ServiceProcess],
    *,
    quiet: float = 3.0,
    timeout: float = 180.0,
) -> float:
    """Wait until the group has committed every input record and the snapshot topic is still.

    Returns the seconds it took; fails (never stall) when the service does not get there.
    A slow settle prints how the backlog went down, to tell a slow service from a stuck one.
    """
    probe = KafkaProbe(deployment)
    started = time.monotonic()
    last: tuple[int | None, int | None] | None = None
    still_since = started
    trace: list[str] = []
    try:
        while True:
            state = (await probe.lag(), await probe.snapshot_end())
            now = time.monotonic()
            if not trace or trace[-1].split(" ", 1)[1] != f"lag={state[0]}":
                trace.append(f"{now - started:.0f}s lag={state[0]}")
            if state != last or state[0] != 0 or state[1] is None:
                last, still_since = state, now
            elif now - still_since >= quiet:
                if now - started > 30:
                    print(f"\nslow settle ({now - started:.0f}s): {', '.join(trace)}")
                return now - started
            if now - started > timeout:
                alive = {p.name: p.alive for p in processes}
                msg = (
                    f"stalled: {state[0]} input records still uncommitted after {timeout:.0f}s "
                    f"(instances alive: {alive}); backlog: {', '.join(trace)}"
                )
                raise AssertionError(msg)
            await asyncio.sleep(0.5)
    finally:
        await probe.close()


# =========================================================================== verdict


@dataclass
class Findings:
    """What differs from the contract, counted the way the summary reports it."""

    lost: int = 0
    duplicated: int = 0
    orphaned: int = 0
    wrong: int = 0
    republished: int = 0  # a revision sent again, same content: allowed after a crash
    problems: list[str] = field(default_factory=list)

    def add(self, what: str, count: int, message: str) -> None:
        setattr(self, what, getattr(self, what) + count)
        if len(self.problems) < 40:
            self.problems.append(f"[{what}] {message}")

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.orphaned or self.wrong)

    def report(self) -> str:
        return "\n".join(self.problems) or "no problem"


async def verify(
    deployment: Deployment,
    sent: Sequence[Outgoing],
    service: ServiceProcess,
    *,
    strict_order: bool,
) -> Findings:
    """Compare everything observable with the model of the events Kafka acknowledged."""
    model = Model(sent)
    found = Findings()
    client = deployment.mongo()
    try:
        db = client[deployment.database]
        docs = {name: await db[name].find().to_list() for name in cols.ENTITY_COLLECTIONS}
        # An event's mark: its processed_events document, or the version it made.
        marks: Counter[str] = Counter()
        for name in (cols.PROCESSED_EVENTS, cols.VERSIONS):
            async for d in await db[name].aggregate(
                [{"$group": {"_id": "$campaign_id", "n": {"$sum": 1}}}]
            ):
                marks[d["_id"]] += d["n"]
        orphans = {
            name: await (
                await db[name].aggregate(
                    [
                        {
                            "$lookup": {
                                "from": cols.VERSIONS,
                                "localField": "version_id",
                                "foreignField": "_id",
                                "as": "version",
                            }
                        },
                        {"$match": {"version": {"$size": 0}}},
                        {"$project": {"_id": 1, "version_id": 1}},
                    ]
                )
            ).to_list()
            for name in (cols.AUDIT_REPORTS, cols.ITERATION_LOGS)
        }
    finally:
        await client.close()

    for name, rows in orphans.items():
        if rows:
            found.add("orphaned", len(rows), f"{name} without their version: {rows[:3]}")

    _check_versions(model, docs["versions"], found)
    _check_lineage(model, docs["audit_reports"], "audits", "attempt", found)
    _check_lineage(model, docs["iteration_logs"], "feedback", None, found)
    for campaign_id, expected in model.marks.items():
        stored = marks.get(campaign_id, 0)
        if stored < expected:
            found.add("lost", expected - stored, f"{campaign_id}: {stored}/{expected} marks")
        elif stored > expected:
            found.add("duplicated", stored - expected, f"{campaign_id}: {stored} marks")

    # the artifact topic's own order is what numbering follows: it must be the send order
    delivered: dict[str, list[str]] = defaultdict(list)
    for record in await read_topic(deployment, "artifact"):
        data = record.value["data"]
        if data["version_id"] not in delivered[data["artifact_id"]]:
            delivered[data["artifact_id"]].append(data["version_id"])
    for campaign in model.campaigns.values():
        for artifact in campaign.artifacts.values():
            sent_order = [v.version_id for v in artifact.versions]
            assert delivered[artifact.artifact_id] == sent_order, "the producer reordered"

    published = await _check_snapshot_topic(deployment, model, found, strict_order=strict_order)
    recomputed = _recompute(docs)
    async with httpx.AsyncClient(base_url=service.base_url, timeout=10.0) as http:
        for campaign_id, campaign in sorted(model.campaigns.items()):
            expected = campaign.snapshot()
            last = published.get(campaign_id)
            if last is None:
                continue  # counted as lost by the topic check
            if last != expected:
                found.add("wrong", 1, f"{campaign_id}: last snapshot {_diff(expected, last)}")
            response = await http.get(f"/campaigns/{campaign_id}/snapshot")
            if response.status_code != 200 or response.json() != last:
                found.add(
                    "wrong",
                    1,
                    f"{campaign_id}: HTTP {response.status_code} "
                    f"{_diff(last, response.json()) if response.status_code == 200 else ''}",
                )
            if recomputed.get(campaign_id) != last:
                found.add(
                    "wrong",
                    1,
                    f"{campaign_id}: stored documents {_diff(last, recomputed.get(campaign_id))}",
                )
    return found


def _check_versions(model: Model, stored: list[dict[str, Any]], found: Findings) -> None:
    by_id = {d["_id"]: d for d in stored}
    for version in model.versions.values():
        doc = by_id.pop(version.version_id, None)
        if doc is None:
            found.add("lost", 1, f"version {version.version_id} not stored")
            continue
        expected = {
            "version_id": version.version_id,
            "campaign_id": version.campaign_id,
            "artifact_id": version.artifact_id,
            "version_number": version.number,
            "audit_state": version.audit_state,
            "audit_attempts": len(version.audits),
            "archived": version.archived,
            "approved": version.approved,
        }
        actual = {key: doc.get(key) for key in expected}
        if actual != expected:
            what = "duplicated" if actual["version_number"] > version.number else "wrong"
            found.add(what, 1, f"version {version.version_id}: {_diff(expected, actual)}")
    for doc in by_id.values():
        found.add("duplicated", 1, f"unexpected version {doc['_id']}")
    numbers: dict[str, list[int]] = defaultdict(list)
    for doc in stored:
        numbers[doc["artifact_id"]].append(doc["version_number"])
    for artifact_id, seen in numbers.items():
        if sorted(seen) != list(range(1, len(seen) + 1)):
            found.add("wrong", 1, f"artifact {artifact_id} numbered {sorted(seen)}")


def _check_lineage(
    model: Model,
    stored: list[dict[str, Any]],
    attribute: str,
    number: str | None,
    found: Findings,
) -> None:
    """One document per event (by its `source_event`), beside its version; with `number`,
    numbered 1..k per version in the order of their topic."""
    by_event: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for doc in stored:
        by_event[doc["source_event"]["id"]].append(doc)
    held = {event["id"] for event in model.held_events()}
    for version in model.versions.values():
        expected_ids: list[str] = getattr(version, attribute)
        for event_id in expected_ids:
            copies = by_event.pop(event_id, [])
            if not copies:
                found.add("lost", 1, f"{attribute} event {event_id} of {version.version_id}")
            elif len(copies) > 1:
                found.add(
                    "duplicated", len(copies) - 1, f"{attribute} event {event_id} x{len(copies)}"
                )
        lineage = [d for d in stored if d["version_id"] == version.version_id]
        if number is None:
            actual: list[Any] = sorted(d["source_event"]["id"] for d in lineage)
            wanted: list[Any] = sorted(expected_ids)
        else:
            lineage.sort(key=lambda d: d[number])
            actual = [(d[number], d["source_event"]["id"]) for d in lineage]
            wanted = list(enumerate(expected_ids, start=1))
        if actual != wanted:
            found.add("wrong", 1, f"{attribute} of {version.version_id}: {actual} != {wanted}")
    for event_id, copies in by_event.items():
        what = "orphaned" if event_id in held else "duplicated"
        found.add(what, len(copies), f"{attribute}: unexpected document for event {event_id}")


async def _check_snapshot_topic(
    deployment: Deployment, model: Model, found: Findings, *, strict_order: bool
) -> dict[str, dict[str, Any]]:
    """Revisions 1..N per campaign, same content when repeated, in order; the last of each."""
    streams: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in await read_topic(deployment, "snapshot"):
        data = record.value["data"]
        if record.key != data["campaign_id"].encode():
            found.add("wrong", 1, f"snapshot of {data['campaign_id']} keyed {record.key!r}")
        streams[data["campaign_id"]].append(data)
    last: dict[str, dict[str, Any]] = {}
    for campaign_id in set(streams) | set(model.campaigns):
        stream = streams.get(campaign_id, [])
        expected_n = model.campaigns[campaign_id].revision if campaign_id in model.campaigns else 0
        first: dict[int, dict[str, Any]] = {}
        highest = 0
        for position, snapshot in enumerate(stream):
            revision = snapshot["revision"]
            if revision in first:
                found.republished += 1
                if snapshot != first[revision]:
                    found.add(
                        "duplicated",
                        1,
                        f"{campaign_id} revision {revision} published twice with different "
                        f"content: {_diff(first[revision], snapshot)}",
                    )
            else:
                if revision < highest:
                    found.add(
                        "wrong",
                        1,
                        f"{campaign_id}: new revision {revision} after {highest} (position "
                        f"{position})",
                    )
                first[revision] = snapshot
            if strict_order and revision < highest:
                found.add(
                    "wrong",
                    1,
                    f"{campaign_id}: revision {revision} after {highest} at position {position} "
                    f"(order {[s['revision'] for s in stream]})",
                )
            highest = max(highest, revision)
        missing = set(range(1, expected_n + 1)) - set(first)
        extra = set(first) - set(range(1, expected_n + 1))
        if missing:
            found.add("lost", len(missing), f"{campaign_id}: revisions {sorted(missing)} missing")
        if extra:
            found.add("duplicated", len(extra), f"{campaign_id}: unexpected {sorted(extra)}")
        if first:
            last[campaign_id] = first[max(first)]
    return last


def _recompute(docs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Each campaign's snapshot as the stored documents say it should read."""
    by_campaign: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for name, rows in docs.items():
        for doc in rows:
            by_campaign[doc["campaign_id"]][name].append(doc)
    result = {}
    for campaign_id, mine in by_campaign.items():
        if not mine["campaigns"]:
            continue
        campaign = mine["campaigns"][0]
        versions = mine["versions"]
        artifacts = []
        for artifact in sorted(mine["artifacts"], key=lambda d: d["_id"]):
            own = [v for v in versions if v["artifact_id"] == artifact["_id"]]
            live = [v for v in own if not v["archived"]]
            active = max(live, key=lambda v: v["version_number"]) if live else None
            artifacts.append(
                {
                    "artifact_id": artifact["_id"],
                    "artifact_type": artifact["artifact_type"],
                    "version_count": len(own),
                    "active_version": {
                        "version_id": active["_id"],
                        "version_number": active["version_number"],
                        "created_at": iso(active["created_at"]),
                        "audit_state": active["audit_state"],
                        "approved": active["approved"],
                    }
                    if active
                    else None,
                }
            )
        result[campaign_id] = {
            "campaign_id": campaign_id,
            "revision": campaign["revision"],
            "name": campaign.get("name"),
            "status": campaign["status"],
            "deleted": campaign["deleted"],
            "created_at": iso(campaign["created_at"]),
            "updated_at": iso(campaign["updated_at"]),
            "artifacts": artifacts,
            "runs": [
                {
                    "run_id": run["_id"],
                    "status": run["status"],
                    "execution_mode": run.get("execution_mode"),
                    "started_at": iso(run.get("started_at")),
                    "completed_at": iso(run.get("completed_at")),
                    "version_count": run.get("version_count", 0),
                }
                for run in sorted(mine["orchestration_runs"], key=lambda d: d["_id"])
            ],
            "counts": {
                "versions": len(versions),
                "audit_reports": len(mine["audit_reports"]),
                "iteration_logs": len(mine["iteration_logs"]),
                "archived_versions": sum(v["archived"] for v in versions),
                "approved_versions": sum(v["approved"] for v in versions),
            },
        }
    return result


def _diff(expected: Any, actual: Any) -> str:
    if isinstance(expected, dict) and isinstance(actual, dict):
        keys = sorted(set(expected) | set(actual))
        parts = [
            f"{k}: {expected.get(k)!r} != {actual.get(k)!r}"
            for k in keys
            if expected.get(k) != actual.get(k)
        ]
        return "; ".join(parts)[:600]
    return f"{expected!r} != {actual!r}"[:600]


def assert_clean(found: Findings, context: str) -> None:
    assert found.clean, f"{context}: {found.report()}"


# =========================================================================== tests


@pytest.mark.slow
async def test_crash_safety(
    deployment: Deployment,
    service_factory: Factory,
    kafka_server: KafkaServer,
    mongo_server: MongoServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """~3,000 mixed events over ~80 s; the service SIGKILLed 4 times, Kafka and MongoDB each
    restarted once; afterwards every effect is there exactly once and the snapshots agree."""
    assert mongo_server.sync_on_commit, "acknowledged writes must survive a restart"
    caplog.set_level(logging.CRITICAL, logger="aiokafka")  # the broker is away on purpose
    began = time.monotonic()
    stream = MixedStream(campaigns=50, versions=5, span=80.0)
    rng, bursts = random.Random(stream.seed), random.Random(stream.seed + 1)
    duration = 80.0
    service = await service_factory("ledger").start()
    sender = Sender(deployment)
    timeline: list[str] = []

    async def crash(after_burst: bool = True) -> None:
        if after_burst:  # just after a burst begins, when a batch is likely in flight
            await sender.next_burst()
            await asyncio.sleep(rng.uniform(0.0, 0.4))
        service.sigkill()
        timeline.append(f"{time.monotonic() - began:.0f}s kill")
        await asyncio.sleep(rng.uniform(0.1, 2.0))
        await service.start()

    async def restart(server: KafkaServer | MongoServer) -> None:
        timeline.append(f"{time.monotonic() - began:.0f}s restart {server.name}")
        await server.arestart()

    async def restart_mongo_then_crash() -> None:
        await restart(mongo_server)
        await asyncio.sleep(rng.uniform(0.5, 4.0))
        await crash(after_burst=False)  # while it works off what piled up meanwhile

    async def chaos(stream_started: float) -> None:
        plan: list[tuple[float, Callable[[], Any]]] = [
            (rng.uniform(0.08, 0.2), crash),
            (0.28, lambda: restart(kafka_server)),
            (rng.uniform(0.45, 0.55), crash),
            (0.6, restart_mongo_then_crash),
            (rng.uniform(0.8, 0.92), crash),
        ]
        for at, action in plan:
            delay = stream_started + at * duration - time.monotonic()
            await asyncio.sleep(max(delay, 2.0))
            await action()

    chaos_task = asyncio.create_task(chaos(time.monotonic()))
    try:
        await sender.send_all(stream.events, duration=duration, bursts=bursts)
        await chaos_task
        settled = await settle(deployment, [service])
    finally:
        chaos_task.cancel()
        await sender.close()
    found = await verify(deployment, sender.sent, service, strict_order=False)
    elapsed = time.monotonic() - began
    print(
        f"\ncrash-safety: events sent {len(sender.sent)} ({stream.distinct} distinct, "
        f"{len(sender.sent) - stream.distinct} redelivered), kills {service.kills}, "
        f"restarts {service.starts - 1} service + 1 kafka + 1 mongo, lost {found.lost}, "
        f"duplicated {found.duplicated}, orphaned {found.orphaned}, wrong {found.wrong}, "
        f"republished revisions {found.republished}, producer retries {sender.retries}, "
        f"settled in {settled:.0f}s, run time {elapsed:.0f}s, seed {stream.seed} "
        f"[{', '.join(timeline)}]"
    )
    assert stream.distinct >= 3000 and len(sender.sent) >= len(stream)
    assert service.kills >= 3
    assert_clean(found, f"after {service.kills} kills (seed {stream.seed})")


@pytest.mark.slow
async def test_replay_changes_nothing(deployment: Deployment, service_factory: Factory) -> None:
    """All offsets rewound to the start: the whole stream again changes no document and
    publishes nothing."""
    began = time.monotonic()
    stream = MixedStream(campaigns=12, versions=4, span=4.0)
    service = await service_factory("ledger").start()
    sender = Sender(deployment)
    try:
        await sender.send_all(stream.events, duration=4.0)
    finally:
        await sender.close()
    await settle(deployment, [service])
    found = await verify(deployment, sender.sent, service, strict_order=True)
    assert_clean(found, "before the replay")
    before = await _dump(deployment)
    probe = KafkaProbe(deployment)
    try:
        outputs = [deployment.topic("snapshot"), deployment.topic("dead_letter")]
        published = await probe.end_offsets(outputs)
        assert await service.sigterm() is not None, "the service did not stop within 45 s"
        rewound = await reset_group_to_earliest(deployment)
        assert set(rewound.values()) == {0}
        assert (await probe.lag() or 0) >= len(sender.sent), "the group was not rewound"
        await service.start()
        await settle(deployment, [service])
        assert await probe.end_offsets(outputs) == published, "the replay published again"
    finally:
        await probe.close()
    after = await _dump(deployment)
    for name in before:
        assert after[name] == before[name], f"the replay changed {name}"
    print(
        f"\nreplay: {len(sender.sent)} events replayed, nothing changed, "
        f"run time {time.monotonic() - began:.0f}s"
    )


async def _dump(deployment: Deployment) -> dict[str, list[dict[str, Any]]]:
    client = deployment.mongo()
    try:
        db = client[deployment.database]
        dump = {
            name: await db[name].find(sort=[("_id", 1)]).to_list()
            for name in cols.ENTITY_COLLECTIONS
        }
        dump["processed_events (count)"] = [{"n": await db.processed_events.count_documents({})}]
        return dump
    finally:
        await client.close()


@pytest.mark.slow
async def test_three_instances_one_group(deployment: Deployment, service_factory: Factory) -> None:
    """Two instances, a third joining and one leaving mid-stream: the same final state as the
    model of one instance, revisions in order with no gaps."""
    began = time.monotonic()
    stream = MixedStream(campaigns=20, versions=5, span=36.0)
    bursts = random.Random(stream.seed)
    duration = 36.0
    first, second, third = (service_factory(n) for n in ("ledger-a", "ledger-b", "ledger-c"))
    await asyncio.gather(first.start(), second.start())
    sender = Sender(deployment)
    exit_code: list[int | None] = []

    async def scale(stream_started: float) -> None:
        await asyncio.sleep(stream_started + 0.3 * duration - time.monotonic())
        await third.start()
        await asyncio.sleep(stream_started + 0.6 * duration - time.monotonic())
        exit_code.append(await first.sigterm(timeout=45))

    scaling = asyncio.create_task(scale(time.monotonic()))
    try:
        await sender.send_all(stream.events, duration=duration, bursts=bursts)
        await scaling
    finally:
        scaling.cancel()
        await sender.close()
    assert exit_code[0] is not None, "the instance given SIGTERM did not stop within 45 s"
    await settle(deployment, [first, second, third])
    found = await verify(deployment, sender.sent, second, strict_order=True)
    print(
        f"\nthree instances: events sent {len(sender.sent)}, lost {found.lost}, duplicated "
        f"{found.duplicated}, orphaned {found.orphaned}, wrong {found.wrong}, republished "
        f"{found.republished}, run time {time.monotonic() - began:.0f}s, seed {stream.seed}"
    )
    assert_clean(found, f"two, then three, then two instances (seed {stream.seed})")


@pytest.mark.slow
async def test_sigterm_graceful(deployment: Deployment, service_factory: Factory) -> None:
    """SIGTERM mid-stream: readiness drops before the process ends, which is within 45 s
    and with status 0; after a restart nothing is lost or duplicated."""
    began = time.monotonic()
    stream = MixedStream(campaigns=14, versions=5, span=20.0)
    bursts = random.Random(stream.seed)
    duration = 20.0
    service = await service_factory("ledger").start()
    sender = Sender(deployment)
    observed: dict[str, Any] = {}

    async def stop_and_restart(stream_started: float) -> None:
        await asyncio.sleep(stream_started + 0.4 * duration - time.monotonic())
        await sender.next_burst()  # with a batch most likely in flight
        await asyncio.sleep(0.1)
        signalled = time.monotonic()
        service.send_sigterm()
        observed["not_ready_at"] = None
        while service.alive and time.monotonic() - signalled < 45:
            status = await service.readyz()
            if status != 200 and service.alive:  # not ready, and still running at that moment
                observed["not_ready_at"] = time.monotonic() - signalled
                observed["readyz"] = status
                break
            await asyncio.sleep(0.01)
        observed["exit"] = await service.wait_exit(max(0.0, 45 - (time.monotonic() - signalled)))
        observed["stop_seconds"] = time.monotonic() - signalled
        if observed["exit"] is None:
            service.sigkill()
        await service.start()

    stopping = asyncio.create_task(stop_and_restart(time.monotonic()))
    try:
        await sender.send_all(stream.events, duration=duration, bursts=bursts)
        await stopping
    finally:
        stopping.cancel()
        await sender.close()
    await settle(deployment, [service])
    found = await verify(deployment, sender.sent, service, strict_order=True)
    print(
        f"\nsigterm: events sent {len(sender.sent)}, readiness {observed.get('readyz')} "
        f"after {observed.get('not_ready_at')}s, exit status {observed.get('exit')} after "
        f"{observed.get('stop_seconds', 0):.1f}s, lost {found.lost}, duplicated "
        f"{found.duplicated}, orphaned {found.orphaned}, republished {found.republished}, "
        f"run time {time.monotonic() - began:.0f}s"
    )
    assert observed["exit"] is not None, "still running 45 s after SIGTERM"
    assert observed["not_ready_at"] is not None, "readiness never dropped before the exit"
    assert_clean(found, "after a SIGTERM and a restart")
    assert found.republished == 0, "a graceful stop must not cause revisions to be sent again"
    assert observed["exit"] == 0, f"exit status {observed['exit']} after SIGTERM"


class PurgedBeforeItsRestore(AssertionError):
    """A soft-deleted campaign was purged although its restore was next in line."""


@pytest.mark.slow
async def test_old_delete_then_restore_loses_nothing(
    deployment: Deployment, service_factory: Factory
) -> None:
    """Events stamped 40 days ago (a backlog after an outage, a replay into a new database, a
    producer with a late clock): a delete and, a minute later, a restore. Whenever the sweeper
    runs, the restore must find the campaign whole."""
    service = await service_factory("ledger").start()
    sender = Sender(deployment)
    campaign = f"late-{uuid.uuid4().hex[:8]}"
    artifact = f"{campaign}.a0"
    old = datetime.now(UTC) - timedelta(days=40)

    def event(kind: str, type_: str, seconds: int, **data: Any) -> Outgoing:
        body = cloud_event(
            type_,
            {"campaign_id": campaign, **data},
            source="urn:chaos:backlog",
            time=old + timedelta(seconds=seconds),
        )
        return Outgoing(kind, body)

    def version(n: int, seconds: int) -> Outgoing:
        return event(
            "artifact",
            "campaign.artifact.generated",
            seconds,
            artifact_id=artifact,
            artifact_type="copy",
            version_id=f"{artifact}.v{n}",
            content={"headline": f"take {n}"},
        )

    statuses: list[int] = []
    try:
        await sender.send(event("lifecycle", "campaign.created", 0, name="Late"))
        await sender.send(version(1, 1))
        await sender.send(event("lifecycle", "campaign.delete-requested", 60))
        async with httpx.AsyncClient(base_url=service.base_url, timeout=5.0) as http:
            deleted_seen = None
            while True:  # until purged, or for more than one sweep (5 s) after the delete
                status = (await http.get(f"/campaigns/{campaign}/snapshot")).status_code
                statuses.append(status)
                if status == 410 and deleted_seen is None:
                    deleted_seen = time.monotonic()
                if status == 404 and deleted_seen is not None:
                    break
                if deleted_seen is not None and time.monotonic() - deleted_seen > 8:
                    break
                assert len(statuses) < 200, f"the delete was never applied: {set(statuses)}"
                await asyncio.sleep(0.1)
        await sender.send(event("lifecycle", "campaign.restore-requested", 120))
        await sender.send(version(2, 180))
    finally:
        await sender.close()
    await settle(deployment, [service])
    client = deployment.mongo()
    try:
        stored = [
            (d["_id"], d["version_number"])
            async for d in client[deployment.database].versions.find(
                {"artifact_id": artifact}, sort=[("version_number", 1)]
            )
        ]
    finally:
        await client.close()
    async with httpx.AsyncClient(base_url=service.base_url, timeout=5.0) as http:
        response = await http.get(f"/campaigns/{campaign}/snapshot")
    body = response.json() if response.status_code == 200 else {}
    whole = (
        stored == [(f"{artifact}.v1", 1), (f"{artifact}.v2", 2)]
        and response.status_code == 200
        and body["counts"]["versions"] == 2
        and body["deleted"] is False
    )
    if not whole:
        raise PurgedBeforeItsRestore(
            f"snapshot answered {sorted(set(statuses))} between delete and restore; stored "
            f"versions now {stored}; snapshot {response.status_code} {body.get('counts')}"
        )
