"""The real service as a subprocess, the mixed event stream the chaos tests send, and a model.

Three parts, all seen from outside the service (as other teams see it):

- `Deployment` (topics, consumer group, database shared by the instances of one test) with
  the Kafka and MongoDB chores around it, and `ServiceProcess`: `python -m service serve`
  started, SIGKILLed and SIGTERMed like a pod.
- `MixedStream`: several campaigns' realistic histories (versions, audits sent before their
  version, failed audits retried, feedback, approvals, archives, delete and restore, runs,
  redelivered duplicates), interleaved into one send order, and `Sender`, which sends them
  paced, in order, retrying through broker restarts, and keeps the list of what it sent.
- `Model`: the contract's rules written again, independently and naively, so the expected
  final state (version numbers, audit lineage, counts, every campaign's last snapshot and its
  revision) is known without asking the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from pymongo import AsyncMongoClient

from dev.servers.common import free_port
from dev.servers.process import SPAWNER
from service.settings import Settings
from tests.events import cloud_event, iso_z

REPO_ROOT = Path(__file__).resolve().parents[2]

# topic kind -> the setting that names it
TOPIC_SETTINGS = {
    "artifact": "TOPIC_ARTIFACT_GENERATED",
    "audit": "TOPIC_AUDIT_COMPLETED",
    "feedback": "TOPIC_FEEDBACK",
    "lifecycle": "TOPIC_LIFECYCLE",
    "snapshot": "TOPIC_SNAPSHOT_UPDATED",
    "dead_letter": "TOPIC_DEAD_LETTER",
}
INPUT_KINDS = ("artifact", "audit", "feedback", "lifecycle")


# =========================================================================== deployment


@dataclass(frozen=True)
class Deployment:
    """What the instances of one test share: Kafka topics, consumer group and database."""

    kafka: str
    mongo_uri: str
    database: str
    group_id: str
    topics: dict[str, str]
    partitions: int = 3

    @classmethod
    def isolated(cls, kafka: str, mongo_uri: str, label: str = "chaos") -> Deployment:
        tag = f"{label}-{uuid.uuid4().hex[:8]}"
        return cls(
            kafka=kafka,
            mongo_uri=mongo_uri,
            database=f"ledger_{tag.replace('-', '_')}",
            group_id=f"ledger-{tag}",
            topics={kind: f"t-{tag}.{kind}" for kind in TOPIC_SETTINGS},
        )

    def topic(self, kind: str) -> str:
        return self.topics[kind]

    @property
    def input_topics(self) -> list[str]:
        return [self.topics[kind] for kind in INPUT_KINDS]

    def environment(self, http_port: int) -> dict[str, str]:
        """The process environment of one instance (only what the contract lists)."""
        env = {
            key: value
            for key, value in os.environ.items()
            # nothing of the runner's own service settings may leak in (API_TOKENS, ...)
            if key.lower() not in Settings.model_fields and not key.startswith("TOPIC_")
        }
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": self.kafka,
                "MONGODB_URI": self.mongo_uri,
                "MONGODB_DATABASE": self.database,
                "KAFKA_GROUP_ID": self.group_id,
                "KAFKA_TOPIC_PARTITIONS": str(self.partitions),
                "HTTP_PORT": str(http_port),
                "HTTP_HOST": "127.0.0.1",
                "LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
            }
        )
        for kind, setting in TOPIC_SETTINGS.items():
            env[setting] = self.topics[kind]
        return env

    async def create_topics(self) -> None:
        """Every topic up front with the same partition count (the service expects equal ones)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka)
        await admin.start()
        try:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(name, self.partitions, 1) for name in self.topics.values()]
                )
        finally:
            await admin.close()

    def mongo(self) -> AsyncMongoClient[dict[str, Any]]:
        return AsyncMongoClient(self.mongo_uri, tz_aware=True, serverSelectionTimeoutMS=30_000)

    async def drop(self) -> None:
        client = self.mongo()
        try:
            await client.drop_database(self.database)
        finally:
            await client.close()


class KafkaProbe:
    """Long-lived admin and consumer clients for offsets, recreated after a broker restart."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._consumer is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.deployment.kafka)
            await admin.start()
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.deployment.kafka, enable_auto_commit=False
            )
            await consumer.start()
            self._admin, self._consumer = admin, consumer
        return self._admin, self._consumer

    async def close(self) -> None:
        if self._admin is not None:
            with contextlib.suppress(Exception):
                await self._admin.close()
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
        self._admin = self._consumer = None

    def partitions(self, topics: Iterable[str]) -> list[TopicPartition]:
        return [
            TopicPartition(topic, p) for topic in topics for p in range(self.deployment.partitions)
        ]

    async def end_offsets(self, topics: Iterable[str]) -> dict[TopicPartition, int]:
        _, consumer = await self._clients()
        result: dict[TopicPartition, int] = await consumer.end_offsets(self.partitions(topics))
        return result

    async def committed(self) -> dict[TopicPartition, int]:
        admin, _ = await self._clients()
        offsets = await admin.list_consumer_group_offsets(self.deployment.group_id)
        return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}

    async def lag(self) -> int | None:
        """Records of the input topics not yet committed by the group; None if Kafka is away."""
        try:
            end = await self.end_offsets(self.deployment.input_topics)
            committed = await self.committed()
        except (TimeoutError, KafkaError, OSError):
            await self.close()
            return None
        return sum(max(0, offset - committed.get(tp, 0)) for tp, offset in end.items())

    async def snapshot_end(self) -> int | None:
        try:
            end = await self.end_offsets([self.deployment.topic("snapshot")])
        except (TimeoutError, KafkaError, OSError):
            await self.close()
            return None
        return sum(end.values())


@dataclass(frozen=True)
class TopicRecord:
    partition: int
    offset: int
    key: bytes | None
    value: dict[str, Any]


async def read_topic(deployment: Deployment, kind: str, timeout: float = 60.0) -> list[TopicRecord]:
    """Everything on a topic from the beginning to its current end, in partition order."""
    topic = deployment.topic(kind)
    consumer = AIOKafkaConsumer(bootstrap_servers=deployment.kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(deployment.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        records: list[TopicRecord] = []
        deadline = time.monotonic() + timeout
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            if time.monotonic() > deadline:
                msg = f"could not read {topic} to its end within {timeout}s"
                raise AssertionError(msg)
            batches = await consumer.getmany(timeout_ms=500)
            for tp, items in batches.items():
                records.extend(
                    TopicRecord(tp.partition, r.offset, r.key, orjson.loads(r.value))
                    for r in items
                    if r.offset < end[tp]
                )
        return records
    finally:
        await consumer.stop()


async def reset_group_to_earliest(deployment: Deployment) -> dict[TopicPartition, int]:
    """Rewind the (idle) consumer group to the start of every input partition."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=deployment.kafka, group_id=deployment.group_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in deployment.input_topics
            for p in range(deployment.partitions)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        offsets = {tp: await consumer.position(tp) for tp in partitions}
        await consumer.commit(offsets)
        return offsets
    finally:
        await consumer.stop()


# =========================================================================== the service


class ServiceProcess:
    """`python -m service serve` as a real child process, with its log under the test's tmp dir.

    Children are forked by the tethered spawner of dev/servers/process.py, so a killed pytest
    takes them along.
    """

    def __init__(self, deployment: Deployment, log_dir: Path, name: str = "ledger") -> None:
        self.deployment = deployment
        self.name = name
        self.log_file = log_dir / f"{name}.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0
        self.terms = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = self.deployment.environment(self.port)
        with self.log_file.open("ab") as log:
            stamp = time.strftime("%H:%M:%S")
            log.write(
                f"\n=== chaos: start #{self.starts + 1} on port {self.port} at {stamp}\n".encode()
            )
            log.flush()
            return SPAWNER.spawn(
                lambda: subprocess.Popen(
                    [sys.executable, "-m", "service", "serve"],
                    cwd=REPO_ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=SPAWNER.preexec(),  # noqa: PLW1509 - sets PDEATHSIG only
                )
            )

    async def start(self, timeout: float = 120.0) -> ServiceProcess:
        """Start and wait until GET /readyz answers 200 (Kafka and MongoDB reachable)."""
        if self.alive:
            msg = f"{self.name} is already running"
            raise RuntimeError(msg)
        for attempt in range(3):
            self.proc = self._spawn()
            self.starts += 1
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if await self.readyz() == 200:
                    return self
                await asyncio.sleep(0.25)
            else:
                tail = self.log_tail()
                self.sigkill()
                msg = f"{self.name} not ready within {timeout}s; log:\n{tail}"
                raise AssertionError(msg)
            tail = self.log_tail()
            if "address already in use" in tail.lower() and attempt < 2:
                self.port = free_port()  # someone took our port meanwhile
                continue
            msg = f"{self.name} exited with {self.proc.returncode} while starting; log:\n{tail}"
            raise AssertionError(msg)
        raise AssertionError("unreachable")

    async def readyz(self) -> int | None:
        """The status of GET /readyz, or None when nothing answers on the port."""
        try:
            async with httpx.AsyncClient(base_url=self.base_url, timeout=3.0) as client:
                return (await client.get("/readyz")).status_code
        except httpx.HTTPError:
            return None

    def sigkill(self) -> None:
        """A crash: SIGKILL, no shutdown of any kind."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.kills += 1
        self.proc.wait(30)

    def send_sigterm(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.terms += 1

    async def wait_exit(self, timeout: float) -> int | None:
        """The exit code, or None if still running after `timeout` seconds."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.05)
        return self.proc.returncode

    async def sigterm(self, wait: bool = True, timeout: float = 45.0) -> int | None:
        """SIGTERM (a pod being stopped); with `wait`, the exit code (None: still running)."""
        if not self.alive:
            return self.proc.returncode if self.proc else None
        self.send_sigterm()
        if not wait:
            return None
        return await self.wait_exit(timeout)

    async def stop_now(self) -> None:
        """Teardown: a SIGTERM with a short grace, then SIGKILL."""
        if self.alive and await self.sigterm(timeout=20) is None:
            self.sigkill()


# =========================================================================== the stream

ARTIFACT_TYPES = ("copy", "short_copy", "visual_concept")
SOURCES = {
    "artifact": "urn:chaos:generation-agent",
    "audit": "urn:chaos:audit-agent",
    "feedback": "urn:chaos:dashboard",
    "lifecycle": "urn:chaos:orchestrator",
}
KIND_OF_TYPE = {
    "campaign.artifact.generated": "artifact",
    "campaign.audit.completed": "audit",
    "campaign.feedback.submitted": "feedback",
}
VERSION_BOUND = {
    "campaign.audit.completed",
    "campaign.feedback.submitted",
    "campaign.version.approved",
    "campaign.version.archive-requested",
}
AUDIT_STATE = {
    "pass": "passed",
    "conditional": "conditional",
    "fail": "failed",
    "error": "unaudited",
}


def iso(value: datetime | None) -> str | None:
    return None if value is None else iso_z(value)


@dataclass(frozen=True)
class Outgoing:
    """One message to send: its topic kind and the CloudEvent (the Kafka key is the campaign)."""

    kind: str
    event: dict[str, Any]

    @property
    def campaign_id(self) -> str:
        campaign: str = self.event["data"]["campaign_id"]
        return campaign

    @property
    def identity(self) -> tuple[str, str]:
        return self.event["source"], self.event["id"]

    @property
    def type(self) -> str:
        kind: str = self.event["type"]
        return kind


@dataclass
class _Step:
    """An event of a campaign's story before its place (and so its time) in the stream."""

    kind: str
    type: str
    data: dict[str, Any]
    id: str


class MixedStream:
    """Several campaigns' histories, interleaved; `events` is the send order.

    Per campaign: created (sometimes only after the first versions), status changes (one
    repeated, which changes nothing), two runs, three artifacts with `versions` versions each
    (explicit version ids, parent and feedback links), one to three audit attempts per version
    (about a fifth sent before their version, so held then attached; `error` outcomes then
    retried), feedback, approvals, archives of the active version (sometimes every version of
    an artifact), a delete and a later restore, and sometimes an audit of a version that is
    never sent (held for good). About 3% of the messages are redeliveries of earlier ones.
    """

    def __init__(
        self,
        campaigns: int,
        versions: int = 5,
        seed: int | None = None,
        prefix: str = "",
        span: float = 30.0,
    ) -> None:
        self.seed = seed if seed is not None else random.randrange(1 << 30)
        self.rng = random.Random(self.seed)
        self.prefix = prefix or f"c{uuid.uuid4().hex[:6]}"
        self.versions = versions
        self._ids = 0
        self.campaign_ids = [f"{self.prefix}-{n:03d}" for n in range(campaigns)]
        stories = {c: deque(self._story(c)) for c in self.campaign_ids}
        # Event times as a producer would stamp them, spread over about the time of sending
        # (the campaign retention is counted from a delete's event time: keep them recent).
        self.start = datetime.now(UTC).replace(microsecond=0)
        self.step = timedelta(seconds=span / sum(len(s) for s in stories.values()))
        self.events: list[Outgoing] = []
        self.duplicates = 0
        index = 0
        while stories:
            names = list(stories)
            campaign = self.rng.choices(names, weights=[len(stories[n]) for n in names])[0]
            step = stories[campaign].popleft()
            if not stories[campaign]:
                del stories[campaign]
            self.events.append(self._event(step, index))
            index += 1
            if self.rng.random() < 0.03:  # a redelivery of an earlier message, same bytes
                self.events.append(self.rng.choice(self.events))
                self.duplicates += 1

    def __len__(self) -> int:
        return len(self.events)

    @property
    def distinct(self) -> int:
        return len({e.identity for e in self.events})

    def _new_id(self) -> str:
        self._ids += 1
        return f"{self.prefix}-e{self._ids:06d}"

    def _event(self, step: _Step, index: int) -> Outgoing:
        event = cloud_event(
            step.type,
            step.data,
            id=step.id,
            source=SOURCES[step.kind],
            time=self.start + self.step * index,
            datacontenttype="application/json",
        )
        if index % 2:
            event["subject"] = step.data["campaign_id"]
        return Outgoing(step.kind, event)

    def _audit_outcomes(self) -> list[str]:
        roll = self.rng.random()
        final = self.rng.choice(["pass", "pass", "conditional", "fail"])
        if roll < 0.08:
            return ["error", "error", final]
        if roll < 0.35:
            return ["error", final]
        return [final]

    def _story(self, campaign: str) -> list[_Step]:
        rng = self.rng
        steps: list[_Step] = []

        def step(kind: str, type_: str, **data: Any) -> _Step:
            return _Step(kind, type_, {"campaign_id": campaign, **data}, self._new_id())

        def add(kind: str, type_: str, **data: Any) -> _Step:
            item = step(kind, type_, **data)
            steps.append(item)
            return item

        def lifecycle(type_: str, **data: Any) -> _Step:
            return add("lifecycle", type_, **data)

        created = step(
            "lifecycle",
            "campaign.created",
            name=f"Campaign {campaign}",
            brief={"audience": "runners", "market": rng.choice(["fr", "de", "us"])},
        )
        created_late = rng.random() < 0.3
        if not created_late:
            steps.append(created)
        lifecycle("campaign.status-changed", status="generating")
        runs = [f"{campaign}.r1", f"{campaign}.r2"]
        lifecycle("campaign.run.started", run_id=runs[0], execution_mode="parallel")
        artifacts = [(f"{campaign}.a{j}", kind) for j, kind in enumerate(ARTIFACT_TYPES)]
        archive_all = artifacts[2][0] if rng.random() < 0.15 else None
        previous: dict[str, tuple[str | None, str | None]] = {}
        half = (self.versions + 1) // 2
        for rnd in range(1, self.versions + 1):
            if rnd == half + 1:
                lifecycle("campaign.run.completed", run_id=runs[0], status="completed")
                lifecycle("campaign.run.started", run_id=runs[1], execution_mode="sequential")
            run = runs[0] if rnd <= half else runs[1]
            for artifact, artifact_type in artifacts:
                version = f"{artifact}.v{rnd}"
                audits = [
                    step(
                        "audit",
                        "campaign.audit.completed",
                        version_id=version,
                        outcome=outcome,
                        category_scores={"brand": {"score": rng.randint(40, 100)}},
                        auditor="auditor-7",
                        **({"error": "model timeout"} if outcome == "error" else {}),
                    )
                    for outcome in self._audit_outcomes()
                ]
                early = rng.random() < 0.2
                if early:  # the audit agent was faster than the generation topic
                    steps.append(audits.pop(0))
                parent, feedback = previous.get(artifact, (None, None))
                links = {"parent_version_id": parent} if parent else {}
                if feedback:
                    links["feedback_id"] = feedback
                add(
                    "artifact",
                    "campaign.artifact.generated",
                    artifact_id=artifact,
                    artifact_type=artifact_type,
                    version_id=version,
                    run_id=run,
                    content={
                        "headline": f"{artifact} take {rnd}",
                        "body": "x" * rng.randint(5, 60),
                    },
                    agent="copywriter",
                    **links,
                )
                steps.extend(audits)
                feedback_id = None
                if rng.random() < 0.5:
                    feedback_id = add(
                        "feedback",
                        "campaign.feedback.submitted",
                        artifact_id=artifact,
                        version_id=version,
                        feedback_text=f"make take {rnd} punchier",
                        tags=["tone"],
                        submitted_by="reviewer-1",
                    ).id
                if rng.random() < 0.25:
                    lifecycle("campaign.version.approved", version_id=version, approved_by="lead")
                if (
                    artifact == archive_all
                    or rng.random() < 0.12
                    or (rnd == self.versions and rng.random() < 0.35)
                ):
                    lifecycle("campaign.version.archive-requested", version_id=version)
                previous[artifact] = (version, feedback_id)
            if created_late and rnd == 1:
                steps.append(created)
            if rnd == 2:
                lifecycle("campaign.status-changed", status="generated")
                lifecycle("campaign.status-changed", status="generated")  # changes nothing
            if rnd == 3:
                lifecycle("campaign.status-changed", status="auditing")
        failed = rng.random() < 0.3
        lifecycle(
            "campaign.run.completed",
            run_id=runs[1],
            status="failed" if failed else "completed",
            **({"error": "budget exhausted"} if failed else {}),
        )
        lifecycle("campaign.status-changed", status="completed")
        if rng.random() < 0.5:  # a version that never comes: its audit stays held
            add(
                "audit",
                "campaign.audit.completed",
                version_id=f"{campaign}.ghost",
                outcome="pass",
            )
        # delete, some history, restore: the campaign ends restored
        at = rng.randint(len(steps) // 2, len(steps) - 4)
        steps.insert(at, step("lifecycle", "campaign.delete-requested"))
        steps.insert(at + rng.randint(2, 5), step("lifecycle", "campaign.restore-requested"))
        return steps


class Sender:
    """Sends a stream in order (one at a time, acks=all), retrying through broker restarts.

    `sent` lists what Kafka acknowledged, in order. A message whose acknowledgement was lost
    may be written twice by the retry: a redelivery, which the contract allows.
    """

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.producer: AIOKafkaProducer | None = None
        self.sent: list[Outgoing] = []
        self.retries = 0
        self._burst_waiters: list[asyncio.Future[None]] = []

    async def _producer(self) -> AIOKafkaProducer:
        if self.producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.deployment.kafka,
                acks="all",
                enable_idempotence=True,
                linger_ms=0,
                # Short: while the broker is away aiokafka's sender spins on metadata for any
                # batch it holds, burning a core this busy machine does not have.
                request_timeout_ms=2_500,
                retry_backoff_ms=300,
            )
            await producer.start()
            self.producer = producer
        return self.producer

    async def close(self) -> None:
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await self.producer.stop()
            self.producer = None

    async def send(self, item: Outgoing) -> None:
        value = orjson.dumps(item.event)
        key = item.campaign_id.encode()
        headers = [("content-type", b"application/cloudevents+json")]
        failures = 0
        while True:
            try:
                producer = await self._producer()
                await producer.send_and_wait(
                    self.deployment.topic(item.kind), value, key=key, headers=headers
                )
            except (TimeoutError, KafkaError, OSError):
                failures += 1
                self.retries += 1
                await self.close()  # a fresh producer once the broker is back
                if failures > 30:
                    raise
                await self._broker_listening()
            else:
                self.sent.append(item)
                return

    async def _broker_listening(self, timeout: float = 120.0) -> None:
        """Wait, without spinning, until the broker accepts connections again."""
        host, _, port = self.deployment.kafka.split(",")[0].rpartition(":")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 1.0)
            except (OSError, TimeoutError):
                await asyncio.sleep(0.3)
                continue
            writer.close()
            await writer.wait_closed()
            break
        await asyncio.sleep(0.5)

    async def next_burst(self, timeout: float = 5.0) -> None:
        """Return when `send_all` starts its next burst (or after `timeout` seconds)."""
        waiter = asyncio.get_running_loop().create_future()
        self._burst_waiters.append(waiter)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter, timeout)

    async def send_all(
        self, items: Sequence[Outgoing], duration: float = 0.0, bursts: random.Random | None = None
    ) -> None:
        """Send every item, spread over about `duration` seconds: evenly, or with `bursts`
        in bursts of random size (5 to 120), so the service is sometimes idle, sometimes busy."""
        started = time.monotonic()
        index = 0
        while index < len(items):
            due = started + duration * index / len(items)
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            size = bursts.randint(5, 120) if bursts else 1
            for waiter in self._burst_waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._burst_waiters.clear()
            for item in items[index : index + size]:
                await self.send(item)
            index += size


# =========================================================================== the model


@dataclass
class MVersion:
    version_id: str
    campaign_id: str
    artifact_id: str
    number: int
    created_at: datetime
    audits: list[str] = field(default_factory=list)  # event ids, attempt 1 first
    feedback: list[str] = field(default_factory=list)  # event ids, in topic order
    audit_state: str = "pending"
    archived: bool = False
    approved: bool = False

    def render(self) -> dict[str, Any]:
        return {
            "version_id": self.version_id,
            "version_number": self.number,
            "created_at": iso(self.created_at),
            "audit_state": self.audit_state,
            "approved": self.approved,
        }


@dataclass
class MArtifact:
    artifact_id: str
    artifact_type: str
    created_at: datetime
    updated_at: datetime
    versions: list[MVersion] = field(default_factory=list)

    def active(self) -> MVersion | None:
        live = [v for v in self.versions if not v.archived]
        return max(live, key=lambda v: v.number) if live else None


@dataclass
class MRun:
    run_id: str
    status: str = "running"
    execution_mode: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    error: str | None = None
    version_count: int = 0

    def render(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "execution_mode": self.execution_mode,
            "started_at": iso(self.started_at),
            "completed_at": iso(self.completed_at),
            "version_count": self.version_count,
        }


@dataclass
class MCampaign:
    campaign_id: str
    revision: int = 0
    name: str | None = None
    brief: dict[str, Any] | None = None
    status: str = "draft"
    deleted: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None
    artifacts: dict[str, MArtifact] = field(default_factory=dict)
    runs: dict[str, MRun] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)

    def snapshot(self) -> dict[str, Any]:
        return {
            "campaign_id": self.campaign_id,
            "revision": self.revision,
            "name": self.name,
            "status": self.status,
            "deleted": self.deleted,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "artifacts": [
                {
                    "artifact_id": a.artifact_id,
                    "artifact_type": a.artifact_type,
                    "version_count": len(a.versions),
                    "active_version": active.render() if (active := a.active()) else None,
                }
                for a in sorted(self.artifacts.values(), key=lambda a: a.artifact_id)
            ],
            "runs": [self.runs[r].render() for r in sorted(self.runs)],
            "counts": {
                name: self.counts[name]
                for name in (
                    "versions",
                    "audit_reports",
                    "iteration_logs",
                    "archived_versions",
                    "approved_versions",
                )
            },
        }


class Model:
    """The contract's rules, naively: feed events in any order that keeps each topic's order.

    An event seen before (same source and id) does nothing; one naming a version not yet
    stored waits and applies right after that version; each event that changes what the
    snapshot shows moves the campaign's revision by one.
    """

    def __init__(self, events: Iterable[Outgoing] = ()) -> None:
        self.campaigns: dict[str, MCampaign] = {}
        self.versions: dict[str, MVersion] = {}
        self.held: dict[str, list[dict[str, Any]]] = {}
        self.seen: set[tuple[str, str]] = set()
        self.marks: Counter[str] = Counter()  # distinct events per campaign
        for item in events:
            self.feed(item.event)

    def feed(self, event: dict[str, Any]) -> None:
        identity = (event["source"], event["id"])
        if identity in self.seen:
            return
        self.seen.add(identity)
        data = event["data"]
        self.marks[data["campaign_id"]] += 1
        if event["type"] in VERSION_BOUND and data["version_id"] not in self.versions:
            self.held.setdefault(data["version_id"], []).append(event)
            return
        self._apply(event)

    def held_events(self) -> list[dict[str, Any]]:
        return [event for events in self.held.values() for event in events]

    def _apply(self, event: dict[str, Any]) -> None:
        data = event["data"]
        at = datetime.fromisoformat(event["time"])
        campaign = self.campaigns.get(data["campaign_id"]) or MCampaign(data["campaign_id"])
        handler = getattr(
            self, "_" + event["type"].split(".", 1)[1].replace(".", "_").replace("-", "_")
        )
        if handler(campaign, event, data, at):
            self.campaigns[campaign.campaign_id] = campaign
            campaign.revision += 1
            campaign.created_at = min(campaign.created_at or at, at)
            campaign.updated_at = max(campaign.updated_at or at, at)
        if event["type"] == "campaign.artifact.generated":
            for waiting in self.held.pop(data["version_id"], []):
                self._apply(waiting)

    def _run(self, campaign: MCampaign, run_id: str) -> MRun:
        return campaign.runs.setdefault(run_id, MRun(run_id))

    def _artifact_generated(
        self, c: MCampaign, event: dict[str, Any], data: dict[str, Any], at: datetime
    ) -> bool:
        if data["version_id"] in self.versions:
            return False  # the same version again (this stream never changes its content)
        artifact = c.artifacts.setdefault(
            data["artifact_id"], MArtifact(data["artifact_id"], data["artifact_type"], at, at)
        )
        artifact.created_at = min(artifact.created_at, at)
        artifact.updated_at = max(artifact.updated_at, at)
        if data.get("run_id"):
            self._run(c, data["run_id"]).version_count += 1
        version = MVersion(
            data["version_id"], c.campaign_id, artifact.artifact_id, len(artifact.versions) + 1, at
        )
        artifact.versions.append(version)
        self.versions[version.version_id] = version
        c.counts["versions"] += 1
        return True

    def _audit_completed(
        self, c: MCampaign, event: dict[str, Any], data: dict[str, Any], at: datetime
    ) -> bool:
        version = self.versions[data["version_id"]]
        version.audits.append(event["id"])
        version.audit_state = AUDIT_STATE[data["outcome"]]
        c.counts["audit_reports"] += 1
        return True

    def _feedback_submitted(
        self, c: MCampaign, event: dict[str, Any], data: dict[str, Any], at: datetime
    ) -> bool:
        self.versions[data["version_id"]].feedback.append(event["id"])
        c.counts["iteration_logs"] += 1
        return True

    def _version_approved(
        self, c: MCampaign, event: dict[str, Any], data: dict[str, Any], at: datetime
    ) -> bool:
        version = self.versions[data["version_id"]]
        if version.approved:
            return False
        version.approved = True
        c.counts["approved_versions"] += 1
        return True

    def _version_archive_requested(
        self, c: MCampaign, event: dict[str, Any], data: dict[str, Any], at: datetime
    ) -> bool:
        version = self.versions[data["version_id"]]
        if version.archived:
            return False
        version.archived = True
        c.counts["archived_versions"] += 1
        return True

    def _created(
        self, c: MCampaign, event: dict[str, Any], data: dict[str, Any], at: datetime
    ) -> bool:
        if (c.name, c.brief) == (data["name"], data.get("brief")):
            return False
        c.name, c.brief = data["name"], data.get("brief")
        return True

    def _status_changed(
        self, c: MCampaign, event: dict[str, Any], data: dict[str, Any], at: datetime
    ) -> bool:
        if c.status == data["status"]:
            return False
        c.status = data["status"]
        return True

    def _run_started(
        self, c: MCampaign, event: dict[str, Any], data: dict[str, Any], at: datetime
    ) -> bool:
        before = c.runs[data["run_id"]].render() if data["run_id"] in c.runs else None
        run = self._run(c, data["run_id"])
        run.started_at = min(run.started_at or at, at)
        run.execution_mode = data.get("execution_mode") or run.execution_mode
        return before != run.render()

    def _run_completed(
        self, c: MCampaign, event: dict[str, Any], data: dict[str, Any], at: datetime
    ) -> bool:
        existing = c.runs.get(data["run_id"])
        before = (existing.render(), existing.error) if existing else None
        run = self._run(c, data["run_id"])
        run.status, run.completed_at, run.error = data["status"], at, data.get("error")
        return before != (run.render(), run.error)

    def _delete_requested(
        self, c: MCampaign, event: dict[str, Any], data: dict[str, Any], at: datetime
    ) -> bool:
        if c.deleted:
            return False
        c.deleted = True
        return True

    def _restore_requested(
        self, c: MCampaign, event: dict[str, Any], data: dict[str, Any], at: datetime
    ) -> bool:
        if not c.deleted:
            return False
        c.deleted = False
        return True
