"""`make bench-compare`: campaign-ledger beside the official MongoDB Kafka sink connector and
the raw database ceiling, on one broker, one database and the same events.

1. Drain (`--systems`, `--rounds`): pre-produces 20,000 `campaign.artifact.generated` events
   (200 campaigns x 100 versions, about 430 bytes, 6 partitions, keyed by campaign) once, then
   alternates rounds; in each, every system drains those events into an empty database:
   - campaign-ledger: `campaign-ledger serve` as a process (SNAPSHOT_PUBLICATION=every, and
     `latest` beside it), done when its consumer group has committed every offset;
   - the MongoDB Kafka sink connector on Kafka Connect standalone (one task, unordered bulk
     writes of 500, replace by `_id`), done when every event is a document;
   - the raw ceiling (bench/ceiling.py): unordered bulk upserts of 500 version documents into
     a collection with the service's validator and indexes, one transaction per bulk, and
     the same without transactions.
   The drain rate counts from the first event stored to the last one done, so start-up
   (JVM, imports, group join) is left out for every system alike. CPU per event comes from
   /proc over the same window, for the system's own process, the database and the broker.
2. Latency (`--latency-systems`, `--latency-rates`, `--latency-seconds`): at each rate the
   same events (50 campaigns round-robin, each event a new version) go to each system on a
   topic of its own, at a steady rate for the same time, after one warm-up event that waits
   for its result (start-up is not latency):
   - campaign-ledger (`--latency-publication`): from the moment an event is handed to the
     producer to the moment the snapshot revision it made (or a later one) is read from the
     snapshot topic. /metrics is read before and after the live phase; the difference gives
     the database round trips per batch (`ledger_mongodb_command_seconds` counts by command
     and collection, divided by the batches of `ledger_batch_records`) and the mean time of
     each phase (`ledger_batch_phase_seconds`). A quiet window after the phase measures the
     commands sent without any batch (maintenance sweeps), shown apart;
   - the connector with `UpdateOneTimestampsStrategy`, its defaults otherwise: from the same
     moment, on the wall clock, to the `_insertedTS` of the event's document, read back after
     the phase. The strategy stamps it while building the write, before the bulk write goes
     out, in whole milliseconds: the write itself is left out, a few ms in the connector's
     favour. So from the same events of the same phase a second measure, comparable with the
     service's: from the same moment to the document seen by a reader in the bench process
     (the wall clock), the connector's write and commit (synced) included as the service's
     figure includes its own write, commit and publication. The reader is a change stream
     (`watch()`, `fullDocument: updateLookup`; the upserts of new `_id`s are inserts, whose
     events carry the document) opened before the steady sending. Its own delay is measured
     in the same phase, once the connector is warm and before the sending: the bench inserts
     200 documents one at a time at 50/s, each acknowledged, into a scratch collection read
     the same way, acknowledged -> seen. Past a 3 ms p50 a reader polling a `find` sorted by
     `_id` every 2 ms is measured too, and the one with the smaller p50 reads the phase (on
     SecantusDB a change stream's getMore waits on the oplog's condition variable, woken by
     each commit: the change stream, within a ms).
   - the latency floor (bench/floor.py, `floor`): a process of its own that, for each fetch
     of the same events, runs one transaction (the versions inserted and each campaign's
     document replaced, compare-and-set, as one client-level bulkWrite) and nothing else:
     from the same moment to its commit, on the wall clock. The least a consumer keeping the
     write guarantee costs on this machine, beside the others.
   One table holds p50 / p99 / max of both at each rate and the service's ratio to the
   connector's `_insertedTS`; a second one the connector's document seen by the reader and the
   service's ratio to it, with the reader's control delay and which reader it was.
3. `--fill N` (1,000,000 without N): one service process drains N events, 20,000 at a time,
   into one database; after each step the raw ceiling upserts the same events into a
   database of its own at the same fill. The drain rates and the service's RSS are printed
   at each 100,000 and summed up at the first step, 100,000 and N (tens of minutes for a
   million).

Servers: its own Kafka and SecantusDB (--sync-on-commit) from dev/servers/, unless
KAFKA_BOOTSTRAP_SERVERS and MONGODB_URI name others (then pass --db-pid/--broker-pid to
count their CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from bson import ObjectId
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient
from pymongo.asynchronous.change_stream import AsyncCollectionChangeStream
from pymongo.asynchronous.collection import AsyncCollection

from bench.__main__ import Child
from bench.events import artifact_events, campaign_ids, event_id, version_id
from dev.servers.common import free_port, free_ports
from dev.servers.jvm import ensure_kafka_jars, find_java
from dev.servers.kafka import KAFKA_LOG4J2_CONFIG, KafkaServer
from dev.servers.mongo import MongoServer

REPO = Path(__file__).resolve().parent.parent
CONNECT_POM = REPO / "bench" / "connect" / "pom.xml"
CONNECT_LIB = REPO / ".cache" / "connect" / "lib"
PARTITIONS = 6
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
POLL = 0.25
# The latency phases: as many campaigns as a busy team's agents write at once, each taking
# its turn; the same for every system.
LIVE_CAMPAIGNS = 50
# A quiet window after a service's live phase: the commands sent in it are the ones that run
# without any batch (the maintenance sweep runs every 5 s by default).
QUIET_SECONDS = 5.0
CONNECTOR = "MongoDB sink connector"
CONNECTOR_SEEN = f"{CONNECTOR}, seen by a reader"
FLOOR = "latency floor: one transaction per fetch, version and campaign, nothing else"
# The reader's own delay (the control of the connector's phase): documents the bench inserts
# one at a time, each acknowledged, into a scratch collection watched the same way.
CONTROL_DOCUMENTS = 200
CONTROL_RATE = 50.0
# A change stream slower than this (p50 of the control, ms) is tried against a polling reader.
STREAM_DELAY_LIMIT = 3.0
POLL_INTERVAL = 0.002

Document = dict[str, Any]
Record = tuple[bytes, bytes]  # (key, value)

# ---- processes and /proc


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU of a process and everything in its process group (its children)."""
    if pid is None:
        return 0.0
    total = 0.0
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the name: state ppid pgrp ... utime(14th field overall) stime(15th)
        if int(entry) == pid or int(fields[2]) == group:
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Pids:
    database: int | None
    broker: int | None

    def sample(self, own: int | None) -> tuple[float, float, float]:
        return cpu_seconds(own), cpu_seconds(self.database), cpu_seconds(self.broker)


@dataclass
class Drain:
    system: str
    events: int
    seconds: float
    cpu: tuple[float, float, float]  # own, database, broker (seconds over the window)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    def per_event_us(self, which: int) -> float:
        return self.cpu[which] / self.events * 1e6


# ---- Kafka


async def create_topics(kafka: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in names])
    finally:
        await admin.close()


async def produce_all(kafka: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka, acks="all", linger_ms=20, max_batch_size=256 * 1024
    )
    await producer.start()
    try:
        pending = [await producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def end_offsets(kafka: str, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def committed(admin: AIOKafkaAdminClient, group: str) -> dict[TopicPartition, int]:
    offsets = await admin.list_consumer_group_offsets(group)
    return {tp: meta.offset for tp, meta in offsets.items()}


# ---- the drain window


async def watch_drain(
    system: str,
    total: int,
    *,
    progress: Callable[[], Any],
    done: Callable[[], Any],
    own_pid: Callable[[], int | None],
    pids: Pids,
    timeout: float = 1800,
) -> Drain:
    """Poll until `done()`. The window opens at the last sample where `progress()` saw nothing
    stored yet, so start-up (JVM, imports, joining the group) stays out of it for every system
    alike. Both probe by key, never by counting a collection: SecantusDB counts by scanning
    (2.4 s for 110,000 versions), which would load the database under measurement."""
    deadline = time.monotonic() + timeout
    before: tuple[float, tuple[float, float, float]] | None = None
    while time.monotonic() < deadline:
        now = time.perf_counter()
        stored = await progress()
        sample = pids.sample(own_pid())
        if stored <= 0:
            before = (now, sample)
        elif before is None:
            raise SystemExit(f"{system}: events were stored before the first sample")
        elif await done():
            seconds = time.perf_counter() - before[0]
            cpu = tuple(b - a for a, b in zip(before[1], pids.sample(own_pid()), strict=True))
            return Drain(system, total, seconds, cpu)  # type: ignore[arg-type]
        await asyncio.sleep(POLL)
    raise SystemExit(f"{system}: not drained within {timeout:.0f}s")


async def present(mongo: str, database: str, collection: str, ids: list[str]) -> int:
    """How many of these `_id`s are stored (an index lookup)."""
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongo)
    try:
        return await client[database][collection].count_documents({"_id": {"$in": ids}})
    finally:
        await client.close()


async def count(mongo: str, database: str, collection: str) -> int:
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongo)
    try:
        return await client[database][collection].estimated_document_count()
    finally:
        await client.close()


# ---- the systems


@dataclass
class Bench:
    kafka: str
    mongo: str
    pids: Pids
    topic: str
    total: int
    tag: str
    campaigns: int
    versions: int
    tmp: Path
    role: str = "consumer"

    async def service(
        self, publication: str, env: dict[str, str] | None = None, label: str = ""
    ) -> Drain:
        child = await service_child(self.kafka, self.mongo, self.role)
        database = child.env["MONGODB_DATABASE"]
        for name in [n for n in child.env if n.startswith("OTEL_")]:
            del child.env[name]  # tracing only as `--tracing` asks
        child.env.update(
            {
                "TOPIC_ARTIFACT_GENERATED": self.topic,
                "SNAPSHOT_PUBLICATION": publication,
                "KAFKA_TOPIC_PARTITIONS": str(PARTITIONS),
                **(env or {}),
            }
        )
        group = child.env["KAFKA_GROUP_ID"]
        ends = await end_offsets(self.kafka, self.topic)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka)
        await admin.start()

        first = [version_id(c, 1) for c in campaign_ids(self.tag, self.campaigns)]

        async def progress() -> int:
            return await present(self.mongo, database, "versions", first)

        async def done() -> bool:
            offsets = await committed(admin, group)
            return all(offsets.get(tp, -1) >= end for tp, end in ends.items())

        try:
            waiter = asyncio.create_task(
                watch_drain(
                    f"campaign-ledger ({publication}{label})",
                    self.total,
                    progress=progress,
                    done=done,
                    own_pid=lambda: child.process.pid if child.process else None,
                    pids=self.pids,
                )
            )
            await child.start()
            drain = await waiter
            assert child.process is not None
            drain.extra["rss_mb"] = rss_mb(child.process.pid)
            # A fresh process: its counters since start are the drain's (with its start-up's
            # commands, which is why the drain prints no round trips per batch).
            drain.extra["batches"] = Batches.between({}, await scrape(child.url))
            return drain
        finally:
            child.stop()
            await admin.close()
            await drop(self.mongo, database)

    async def connector(self) -> Drain:
        name = f"sink-{uuid.uuid4().hex[:8]}"
        database = f"connect_{name[5:]}"
        connect = Connect(
            self,
            name,
            [
                f"topics={self.topic}",
                f"database={database}",
                "collection=events",
                "max.batch.size=500",
                "bulk.write.ordered=false",
                # replace by _id: the CloudEvent's id (a string, as the service's ids)
                # becomes the document's _id
                "transforms=id",
                "transforms.id.type=org.apache.kafka.connect.transforms.ReplaceField$Value",
                "transforms.id.renames=id:_id",
                "document.id.strategy="
                "com.mongodb.kafka.connect.sink.processor.id.strategy.ProvidedInValueStrategy",
                "writemodel.strategy="
                "com.mongodb.kafka.connect.sink.writemodel.strategy.ReplaceOneDefaultStrategy",
            ],
        )

        campaigns = campaign_ids(self.tag, self.campaigns)
        first = [event_id(c, 1) for c in campaigns]
        last = [event_id(c, self.versions) for c in campaigns]

        async def progress() -> int:
            connect.check()
            return await present(self.mongo, database, "events", first)

        async def done() -> bool:
            # The last event of every campaign, then (once, at the end) the exact count.
            return await present(self.mongo, database, "events", last) == len(last) and (
                await count(self.mongo, database, "events") >= self.total
            )

        try:
            drain = await watch_drain(
                CONNECTOR,
                self.total,
                progress=progress,
                done=done,
                own_pid=lambda: connect.process.pid,
                pids=self.pids,
            )
            drain.extra["rss_mb"] = rss_mb(connect.process.pid)
            return drain
        finally:
            connect.stop()
            await drop(self.mongo, database)

    async def ceiling(
        self, *, transaction: bool, offset: int = 0, database: str = "", tag: str = ""
    ) -> Drain:
        database = database or f"ceiling_{uuid.uuid4().hex[:8]}"
        args = [
            sys.executable,
            "-m",
            "bench.ceiling",
            "--uri",
            self.mongo,
            "--database",
            database,
            "--tag",
            tag or self.tag,
            "--campaigns",
            str(self.campaigns),
            "--versions",
            str(self.versions),
            "--offset",
            str(offset),
        ]
        if not transaction:
            args.append("--no-transaction")
        before = self.pids.sample(None)
        process = await asyncio.create_subprocess_exec(*args, stdout=subprocess.PIPE, cwd=REPO)
        out, _ = await process.communicate()
        after = self.pids.sample(None)
        if process.returncode != 0:
            raise SystemExit("bench.ceiling failed")
        result = orjson.loads(out.splitlines()[-1])
        cpu = (result["cpu"], after[1] - before[1], after[2] - before[2])
        name = "raw ceiling" + ("" if transaction else ", no transactions")
        return Drain(name, result["documents"], result["seconds"], cpu)


class Connect:
    """Kafka Connect standalone with one MongoDB sink connector, started at once."""

    def __init__(self, bench: Bench, name: str, sink: list[str]) -> None:
        self.workdir = bench.tmp / name
        self.workdir.mkdir()
        worker = self.workdir / "worker.properties"
        worker.write_text(
            "\n".join(
                [
                    f"bootstrap.servers={bench.kafka}",
                    "key.converter=org.apache.kafka.connect.storage.StringConverter",
                    "value.converter=org.apache.kafka.connect.json.JsonConverter",
                    "value.converter.schemas.enable=false",
                    f"offset.storage.file.filename={self.workdir / 'offsets'}",
                    "offset.flush.interval.ms=1000",
                    "listeners=http://127.0.0.1:0",
                    "consumer.max.poll.records=500",
                    "consumer.auto.offset.reset=earliest",
                    "plugin.discovery=only_scan",
                ]
            )
            + "\n"
        )
        properties = self.workdir / "sink.properties"
        properties.write_text(
            "\n".join(
                [
                    f"name={name}",
                    "connector.class=com.mongodb.kafka.connect.MongoSinkConnector",
                    "tasks.max=1",
                    f"connection.uri={bench.mongo}",
                    *sink,
                ]
            )
            + "\n"
        )
        self.log: IO[bytes] = (self.workdir / "connect.log").open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - our own command line
            [
                find_java(),
                "-Xms256m",
                "-Xmx1g",
                f"-Dlog4j2.configurationFile={KAFKA_LOG4J2_CONFIG}",
                "-cp",
                f"{CONNECT_LIB}/*",
                "org.apache.kafka.connect.cli.ConnectStandalone",
                str(worker),
                str(properties),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def check(self) -> None:
        if self.process.poll() is not None:
            raise SystemExit(f"Kafka Connect exited; see {self.workdir / 'connect.log'}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


async def service_child(kafka: str, mongo: str, role: str) -> Child:
    """`campaign-ledger serve --role R` with its own topics, created beforehand with equal
    partitions."""
    child = Child(kafka, mongo)
    child.serve_args = ["--role", role]
    await create_topics(kafka, list(child.topics.values()))
    return child


async def drop(mongo: str, database: str) -> None:
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongo)
    try:
        await client.drop_database(database)
    finally:
        await client.close()


# ---- /metrics: what a service's batches did over a window

Series = tuple[str, tuple[tuple[str, str], ...]]  # sample name, sorted labels
# The histograms the batch figures come from; only their _sum and _count are kept.
BATCH_METRICS = (
    "ledger_batch_records",
    "ledger_batch_phase_seconds",
    "ledger_mongodb_command_seconds",
)


async def scrape(url: str) -> dict[Series, float]:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{url}/metrics")).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.endswith(("_sum", "_count")) and sample.name.startswith(BATCH_METRICS)
    }


@dataclass
class Batches:
    """A service's batches between two scrapes of /metrics: the counters' differences, so a
    warm-up before the first scrape is left out."""

    batches: float
    records: float
    phases: dict[str, float]  # phase -> mean seconds per batch
    commands: dict[tuple[str, str], float]  # (command, collection) -> commands sent
    command_seconds: dict[tuple[str, str], float]  # (command, collection) -> seconds

    @classmethod
    def between(cls, before: dict[Series, float], after: dict[Series, float]) -> Batches:
        delta = {series: value - before.get(series, 0.0) for series, value in after.items()}
        phase_sums: dict[str, float] = {}
        phase_counts: dict[str, float] = {}
        commands: dict[tuple[str, str], float] = {}
        command_seconds: dict[tuple[str, str], float] = {}
        batches = records = 0.0
        for (name, labels), value in delta.items():
            label = dict(labels)
            if name == "ledger_batch_records_count":
                batches = value
            elif name == "ledger_batch_records_sum":
                records = value
            elif name.startswith("ledger_batch_phase_seconds"):
                into = phase_sums if name.endswith("_sum") else phase_counts
                into[label["phase"]] = value
            elif name.startswith("ledger_mongodb_command_seconds") and value:
                key = (label["command"], label.get("collection", ""))
                (command_seconds if name.endswith("_sum") else commands)[key] = value
        # A phase's mean over the batches that went through it: a phase a batch skips
        # (nothing to publish, say) does not dilute it.
        phases = {p: s / phase_counts[p] for p, s in phase_sums.items() if phase_counts.get(p)}
        return cls(batches, records, phases, commands, command_seconds)

    def round_trips(self) -> float:
        return sum(self.commands.values()) / self.batches if self.batches else 0.0

    def phase_line(self) -> str:
        """Records per batch, then the mean milliseconds of each phase."""
        if not self.batches:
            return "no batches"
        order = ["wait", "load", "rules", "write", "commit", "publish", "ack"]
        names = sorted(self.phases, key=lambda p: (order.index(p) if p in order else 99, p))
        phases = ", ".join(f"{p} {self.phases[p] * 1000:.1f}" for p in names)
        return (
            f"{self.batches:,.0f} batches of {self.records / self.batches:.1f} records; "
            f"ms per batch: {phases}"
        )

    def round_trip_line(self) -> str:
        """Commands per batch by name, each with its collections, largest first."""
        if not self.batches:
            return "no batches"
        by_name: dict[str, dict[str, float]] = {}
        for (command, collection), n in self.commands.items():
            by_name.setdefault(command, {})[collection] = n / self.batches
        parts = []
        for command, collections in sorted(by_name.items(), key=lambda kv: -sum(kv[1].values())):
            inner = ", ".join(
                f"{c or '-'} {n:.2f}" for c, n in sorted(collections.items(), key=lambda kv: -kv[1])
            )
            named = f" ({inner})" if set(collections) != {""} else ""
            parts.append(f"{command} {sum(collections.values()):.2f}{named}")
        return f"{self.round_trips():.2f} = " + "; ".join(parts)

    def command_line(self, top: int = 8) -> str:
        """The commands that took most of a batch's time, in milliseconds per batch."""
        if not self.batches:
            return "no batches"
        slowest = sorted(self.command_seconds.items(), key=lambda kv: -kv[1])[:top]
        return ", ".join(
            f"{command} {collection}".strip() + f" {seconds / self.batches * 1000:.1f}"
            for (command, collection), seconds in slowest
        )


# ---- latency


def live_records(tag: str, rate: float, seconds: float) -> list[Record]:
    """The events of one latency phase, `rate x seconds` of them, the campaigns taking turns."""
    total = int(rate * seconds)
    return artifact_events(tag, LIVE_CAMPAIGNS, -(-total // LIVE_CAMPAIGNS))[:total]


@dataclass
class Sent:
    """When each event was handed to the producer, on two clocks: the monotonic one for a
    result seen in this process, the wall clock for one stamped by another process."""

    monotonic: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)


async def send_steady(
    producer: AIOKafkaProducer, topic: str, records: list[Record], rate: float
) -> Sent:
    sent = Sent()
    started = time.perf_counter()
    for index, (key, value) in enumerate(records):
        due = started + index / rate
        if (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        sent.monotonic.append(time.perf_counter())
        sent.wall.append(time.time())
        await producer.send(topic, value, key=key)
    await producer.flush()
    return sent


class Spread:
    """p50 / p99 / max of `delays` (milliseconds), sorted once made."""

    delays: list[float]

    def __post_init__(self) -> None:
        self.delays.sort()

    @property
    def p50(self) -> float:
        return statistics.median(self.delays)

    @property
    def p99(self) -> float:
        return self.delays[min(len(self.delays) - 1, int(len(self.delays) * 0.99))]

    @property
    def max(self) -> float:
        return self.delays[-1]

    def spread(self) -> str:
        return f"{ms(self.p50)} / {ms(self.p99)} / {ms(self.max)}"


@dataclass
class Control(Spread):
    """A reader's own delay on this server: documents inserted one at a time by the bench,
    from each one acknowledged to the reader seeing it."""

    reader: type[Reader]
    delays: list[float]  # milliseconds, seen - acknowledged, one per document
    rejected: list[Control] = field(default_factory=list)  # readers tried and slower

    @property
    def method(self) -> str:
        return self.reader.method

    def line(self) -> str:
        others = "".join(
            f"; {c.method} tried: p50 / p99 / max {c.spread()} ms, slower" for c in self.rejected
        )
        return (
            f"reader: {self.method}; its own delay on this server (control: "
            f"{len(self.delays)} documents inserted one at a time at {CONTROL_RATE:.0f}/s into a "
            f"scratch collection, acknowledged -> seen) p50 / p99 / max {self.spread()} ms{others}"
        )


@dataclass
class Latency(Spread):
    system: str
    rate: float
    delays: list[float]  # milliseconds, one per event
    seconds: float  # the live phase, from the first send to the last result
    batches: Batches | None = None  # the service's, over the live phase
    quiet: Batches | None = None  # the service's, over QUIET_SECONDS without events
    # The connector's: the same events, handed to the producer -> the document seen by a
    # reader in the bench process (its write and commit included), and that reader's control.
    seen: Latency | None = None
    control: Control | None = None

    def background_line(self) -> str:
        """The commands sent without any batch, per second while quiet, and what they come
        to per batch of the live phase."""
        if self.quiet is None or self.batches is None or not self.batches.batches:
            return ""
        total = sum(self.quiet.commands.values())
        per_batch = total / QUIET_SECONDS * self.seconds / self.batches.batches
        names = ", ".join(
            f"{command} {collection}".strip() + f" {n / QUIET_SECONDS:.2f}/s"
            for (command, collection), n in sorted(self.quiet.commands.items())
        )
        busy = f"; {self.quiet.batches:.0f} batches ran in it" if self.quiet.batches else ""
        return (
            f"{per_batch:.2f} per batch of the live phase are commands sent with no batch "
            f"({QUIET_SECONDS:.0f} s quiet after it: {names or 'none'}{busy})"
        )


def ms(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:,.0f}"


async def service_latency(
    bench: Bench,
    tag: str,
    records: list[Record],
    rate: float,
    publication: str,
    *,
    variant: str | None = None,
) -> Latency:
    """Event handed to the producer -> its revision (or a later one) read from the topic.
    `variant`: one setting changed, NAME=VALUE (`--latency-variant`)."""
    topic = f"{tag}.service-{publication}-{uuid.uuid4().hex[:4]}"
    await create_topics(bench.kafka, [topic])
    child = await service_child(bench.kafka, bench.mongo, bench.role)
    child.env.update(
        {
            "TOPIC_ARTIFACT_GENERATED": topic,
            "SNAPSHOT_PUBLICATION": publication,
            "KAFKA_TOPIC_PARTITIONS": str(PARTITIONS),
        }
    )
    if variant:
        name, _, value = variant.partition("=")
        child.env[name] = value
    await child.start()
    reader = AIOKafkaConsumer(bootstrap_servers=bench.kafka, fetch_max_wait_ms=5)
    arrived: dict[str, list[tuple[int, float]]] = {c: [] for c in campaign_ids(tag, LIVE_CAMPAIGNS)}
    try:
        await assign_all(reader, child.topics["snapshot"])

        async def read() -> None:
            while True:
                for batch in (await reader.getmany(timeout_ms=50)).values():
                    now = time.perf_counter()
                    for record in batch:
                        data = orjson.loads(record.value)["data"]
                        arrived[data["campaign_id"]].append((data["revision"], now))

        reading = asyncio.create_task(read())
        producer = AIOKafkaProducer(bootstrap_servers=bench.kafka, acks="all", linger_ms=0)
        await producer.start()
        try:
            await warm_up(producer, topic, tag, arrived)
            before = await scrape(child.url)
            sent = await send_steady(producer, topic, records, rate)
        finally:
            await producer.stop()
        sent_by_campaign: dict[str, list[float]] = {}
        for (key, _), at in zip(records, sent.monotonic, strict=True):
            sent_by_campaign.setdefault(key.decode(), []).append(at)
        deadline = time.monotonic() + 120
        while any(
            not arrived[c] or max(r for r, _ in arrived[c]) < len(times)
            for c, times in sent_by_campaign.items()
        ):
            if time.monotonic() > deadline:
                raise SystemExit("latency run: snapshots missing after 120 s")
            await asyncio.sleep(0.1)
        finished = max(at for times in arrived.values() for _, at in times)
        # The last batch's offsets commit runs beside the next batch: let it land.
        await asyncio.sleep(1)
        after = await scrape(child.url)
        await asyncio.sleep(QUIET_SECONDS)
        quiet = Batches.between(after, await scrape(child.url))
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
    finally:
        await reader.stop()
        child.stop()
        await drop(bench.mongo, child.env["MONGODB_DATABASE"])
    return Latency(
        f"campaign-ledger ({publication}{', ' + variant if variant else ''})",
        rate,
        revision_delays(sent_by_campaign, arrived),
        finished - sent.monotonic[0],
        Batches.between(before, after),
        quiet,
    )


class Reader:
    """A reader in the bench process: the wall clock at which it first saw each document, by
    the document's `id` (the event's id, or a control document's). `start` before the writes
    it should see; `stop` ends it within a round trip."""

    method = ""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection
        self.seen: dict[str, float] = {}
        self.stopping = False
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.open()
        self.task = asyncio.create_task(self.read())

    async def stop(self) -> None:
        self.stopping = True
        if self.task is not None:
            await self.task

    def check(self) -> None:
        """Raise the reader's error if it ended before `stop`."""
        if self.task is not None and self.task.done() and not self.stopping:
            self.task.result()
            raise SystemExit(f"latency run: the {self.method} ended early")

    def saw(self, document: Document) -> None:
        if "id" in document:
            self.seen.setdefault(document["id"], time.time())

    async def open(self) -> None:
        raise NotImplementedError

    async def read(self) -> None:
        raise NotImplementedError


class StreamReader(Reader):
    """A change stream on the collection. The connector's upserts of new `_id`s are inserts,
    whose events carry the document; `updateLookup` gives an update's too. SecantusDB parks a
    change stream's getMore on its oplog's condition variable, woken by each commit."""

    method = "change stream (collection.watch(), fullDocument updateLookup)"
    stream: AsyncCollectionChangeStream[Document]

    async def open(self) -> None:
        self.stream = await self.collection.watch(
            full_document="updateLookup", max_await_time_ms=100
        )

    async def read(self) -> None:
        try:
            while not self.stopping:
                change = await self.stream.try_next()
                if change is not None and (document := change.get("fullDocument")):
                    self.saw(document)
        finally:
            await self.stream.close()


class PollReader(Reader):
    """A sorted `find` on `_id` past the last one seen, every POLL_INTERVAL. The `_id`s rise in
    the order the documents become visible: ObjectIds made by one writer at a time (the
    connector's single task, whose bulk writes go one after the other, or the bench)."""

    method = f"polling find sorted by _id every {POLL_INTERVAL * 1000:.0f} ms"
    after: Any = None

    async def open(self) -> None:
        last = await self.collection.find_one({}, {"_id": 1}, sort=[("_id", -1)])
        self.after = last["_id"] if last else None

    async def read(self) -> None:
        while not self.stopping:
            query = {} if self.after is None else {"_id": {"$gt": self.after}}
            async for document in self.collection.find(query, {"id": 1}).sort("_id", 1):
                self.saw(document)
                self.after = document["_id"]
            await asyncio.sleep(POLL_INTERVAL)


async def control(kind: type[Reader], collection: AsyncCollection[Document]) -> Control:
    """The reader's own delay: CONTROL_DOCUMENTS inserted one at a time at CONTROL_RATE, each
    acknowledged, then seen by the reader (the wall clock on both ends)."""
    reader = kind(collection)
    await reader.start()
    acknowledged: dict[str, float] = {}
    try:
        started = time.perf_counter()
        for n in range(CONTROL_DOCUMENTS):
            if (delay := started + n / CONTROL_RATE - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            await collection.insert_one({"_id": ObjectId(), "id": f"control-{n}"})
            acknowledged[f"control-{n}"] = time.time()
        deadline = time.monotonic() + 30
        while acknowledged.keys() - reader.seen.keys():
            reader.check()
            if time.monotonic() > deadline:
                raise SystemExit(f"latency run: the {kind.method} missed control documents")
            await asyncio.sleep(0.01)
    finally:
        await reader.stop()
    delays = [(reader.seen[key] - at) * 1000 for key, at in acknowledged.items()]
    return Control(kind, delays)


async def choose_reader(client: AsyncMongoClient[Document], database: str) -> Control:
    """A change stream, measured by its control; past STREAM_DELAY_LIMIT (p50) a polling
    reader's control too, and the one with the smaller p50 reads the phase."""
    tried = [await control(StreamReader, client[database]["control_stream"])]
    if tried[0].p50 > STREAM_DELAY_LIMIT:
        tried.append(await control(PollReader, client[database]["control_poll"]))
    chosen = min(tried, key=lambda c: c.p50)
    chosen.rejected = [c for c in tried if c is not chosen]
    return chosen


async def connector_warm_up(
    producer: AIOKafkaProducer,
    topic: str,
    tag: str,
    events: AsyncCollection[Document],
    connect: Connect,
) -> None:
    """One event through to its document before the clock starts: the JVM is up, the task has
    joined its group and holds its connections."""
    key, value = artifact_events(f"{tag}-warm", 1, 1)[0]
    await producer.send_and_wait(topic, value, key=key)
    deadline = time.monotonic() + 180
    while await events.find_one({"id": event_id(key.decode(), 1)}) is None:
        connect.check()
        if time.monotonic() > deadline:
            raise SystemExit("latency run: the connector stored no warm-up in 180 s")
        await asyncio.sleep(0.05)


async def connector_stored(
    events: AsyncCollection[Document], connect: Connect, reader: Reader, handed: dict[str, float]
) -> None:
    """Wait for every event's document (and the warm-up's), then for the reader to have seen
    each; the reader stops."""
    # Counted only now: SecantusDB counts by scanning, which would load the live phase.
    deadline = time.monotonic() + 120
    while await events.count_documents({}) < len(handed) + 1:
        connect.check()
        if time.monotonic() > deadline:
            raise SystemExit("latency run: the connector's documents missing after 120 s")
        await asyncio.sleep(0.5)
    deadline = time.monotonic() + 30
    while unseen := handed.keys() - reader.seen.keys():
        reader.check()
        if time.monotonic() > deadline:
            raise SystemExit(f"latency run: the reader never saw {len(unseen)} documents")
        await asyncio.sleep(0.05)
    await reader.stop()


async def connector_latency(bench: Bench, tag: str, records: list[Record], rate: float) -> Latency:
    """Event handed to the producer -> the `_insertedTS` of its document (the wall clock), and
    from the same moment to the document seen by a reader in this process (`seen`): a change
    stream opened before the steady sending, or a polling reader if that is faster, whichever
    the control measured on this server just before shows the smaller delay."""
    name = f"live-{uuid.uuid4().hex[:8]}"
    database = f"connect_{name[5:]}"
    topic = f"{tag}.connector"
    await create_topics(bench.kafka, [topic])
    connect = Connect(
        bench,
        name,
        [
            f"topics={topic}",
            f"database={database}",
            "collection=events",
            # Only the write model is chosen, for its timestamps: the rest is the connector's
            # defaults, as a new user meets it (a new ObjectId `_id` per event, ordered bulk
            # writes of whatever a poll returned).
            "writemodel.strategy="
            "com.mongodb.kafka.connect.sink.writemodel.strategy.UpdateOneTimestampsStrategy",
        ],
    )
    client: AsyncMongoClient[Document] = AsyncMongoClient(bench.mongo, tz_aware=True)
    events = client[database]["events"]
    reader: Reader | None = None
    try:
        producer = AIOKafkaProducer(bootstrap_servers=bench.kafka, acks="all", linger_ms=0)
        await producer.start()
        try:
            await connector_warm_up(producer, topic, tag, events, connect)
            # The reader's own delay, on this server, with the connector up and idle.
            chosen = await choose_reader(client, database)
            print(f"latency at {rate:.0f} events/s, {chosen.line()}", flush=True)
            reader = chosen.reader(events)
            await reader.start()
            sent = await send_steady(producer, topic, records, rate)
        finally:
            await producer.stop()
        handed = {
            orjson.loads(value)["id"]: at for (_, value), at in zip(records, sent.wall, strict=True)
        }
        await connector_stored(events, connect, reader, handed)
        seen = dict(reader.seen)
        stored: dict[str, float] = {}
        projection = {"id": 1, "_insertedTS": 1, "_modifiedTS": 1}
        async for document in events.find({}, projection):
            stamp = (document.get("_insertedTS") or document["_modifiedTS"]).timestamp()
            # A redelivered event would be a second document (a new `_id`): its first counts.
            stored[document["id"]] = min(stamp, stored.get(document["id"], stamp))
    finally:
        if reader is not None:
            with contextlib.suppress(Exception):  # its error, if any, is already raised
                await reader.stop()
        connect.stop()
        await client.close()
        await drop(bench.mongo, database)
    if missing := handed.keys() - stored.keys():
        raise SystemExit(f"latency run: {len(missing)} events have no document")
    delays = [(stored[event] - at) * 1000 for event, at in handed.items()]
    seen_delays = [(seen[event] - at) * 1000 for event, at in handed.items()]
    last_seen = max(seen[event] for event in handed)
    return Latency(
        CONNECTOR,
        rate,
        delays,
        max(stored.values()) - sent.wall[0],
        seen=Latency(CONNECTOR_SEEN, rate, seen_delays, last_seen - sent.wall[0]),
        control=chosen,
    )


async def floor_latency(bench: Bench, tag: str, records: list[Record], rate: float) -> Latency:
    """Event handed to the producer -> committed by the latency floor (bench/floor.py): one
    transaction per fetch, the version inserted and its campaign's document replaced as one
    client-level bulkWrite, nothing else. What the database and Kafka cost any consumer that
    keeps the ledger's write guarantee, on this machine beside the others."""
    topic = f"{tag}.floor"
    database = f"floor_{uuid.uuid4().hex[:8]}"
    await create_topics(bench.kafka, [topic])
    warm_key, warm_value = artifact_events(f"{tag}-warm", 1, 1)[0]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.floor",
        "--kafka",
        bench.kafka,
        "--uri",
        bench.mongo,
        "--database",
        database,
        "--topic",
        topic,
        "--expect",
        str(len(records) + 1),
        stdout=subprocess.PIPE,
        cwd=REPO,
        limit=1 << 26,  # its last line holds every event's commit time
    )
    assert process.stdout is not None

    async def line(expected: str | None, timeout: float) -> bytes:
        got = await asyncio.wait_for(process.stdout.readline(), timeout)  # type: ignore[union-attr]
        if not got or (expected is not None and got.strip() != expected.encode()):
            raise SystemExit(f"latency run: bench.floor said {got[:200]!r}, not {expected}")
        return got

    try:
        await line("ready", 60)
        producer = AIOKafkaProducer(bootstrap_servers=bench.kafka, acks="all", linger_ms=0)
        await producer.start()
        try:
            await producer.send_and_wait(topic, warm_value, key=warm_key)
            await line("warm", 60)
            sent = await send_steady(producer, topic, records, rate)
        finally:
            await producer.stop()
        committed = dict(orjson.loads(await line(None, 120)))
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await drop(bench.mongo, database)
    handed = {
        orjson.loads(value)["id"]: at for (_, value), at in zip(records, sent.wall, strict=True)
    }
    delays = [(committed[event] - at) * 1000 for event, at in handed.items()]
    return Latency(f"{FLOOR} (floor)", rate, delays, max(committed.values()) - sent.wall[0])


async def warm_up(
    producer: AIOKafkaProducer,
    topic: str,
    tag: str,
    arrived: dict[str, list[tuple[int, float]]],
) -> None:
    """One event of a campaign of its own, through to its snapshot, before the clock starts:
    the consumer group has joined and every connection is open (start-up is not latency)."""
    key, value = artifact_events(f"{tag}-warm", 1, 1)[0]
    campaign = key.decode()
    arrived[campaign] = []
    await producer.send_and_wait(topic, value, key=key)
    deadline = time.monotonic() + 60
    while not arrived[campaign]:
        if time.monotonic() > deadline:
            raise SystemExit("latency run: the warm-up snapshot did not arrive in 60 s")
        await asyncio.sleep(0.05)


async def assign_all(reader: AIOKafkaConsumer, topic: str) -> None:
    await reader.start()
    while not reader.partitions_for_topic(topic):
        await reader._client.force_metadata_update()
        await asyncio.sleep(0.1)
    reader.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    await reader.seek_to_beginning()


def revision_delays(
    sent: dict[str, list[float]], arrived: dict[str, list[tuple[int, float]]]
) -> list[float]:
    """Per event: the first published revision at or past the one it made, minus its send."""
    delays = []
    for campaign, times in sent.items():
        seen = sorted(arrived[campaign], key=lambda item: item[1])
        for revision, at in enumerate(times, start=1):
            first = next(t for r, t in seen if r >= revision)
            delays.append((first - at) * 1000)
    return delays


def latency_report(results: list[Latency], seconds: float) -> None:
    print(
        f"\nlatency, {LIVE_CAMPAIGNS} campaigns round-robin, {seconds:.0f} s per rate, the same "
        "events for each system, after one warm-up event:\n"
        "  campaign-ledger: event handed to the producer -> its snapshot revision (or a later "
        "one) read from the snapshot topic\n"
        f"  connector: event handed to the producer -> its document's `_insertedTS` "
        f"(mongo-kafka-connect {connector_version()}, UpdateOneTimestampsStrategy, defaults "
        "otherwise)"
    )
    print(
        f"\n{'rate':>7}  {'service':<10} {'service p50 / p99 / max ms':>28} "
        f"{'connector p50 / p99 / max ms':>30} {'p50 ÷':>8} {'p99 ÷':>8}"
    )
    rates = list(dict.fromkeys(r.rate for r in results))
    for rate in rates:
        connector = next((r for r in results if r.rate == rate and r.system == CONNECTOR), None)
        services = [r for r in results if r.rate == rate and r.system != CONNECTOR]
        print_rows(rate, services, connector, 30)
    print(
        "\n(÷: the service's figure over the connector's, at or under 1.00x the service is as "
        "fast. The connector's `_insertedTS` is stamped as UpdateOneTimestampsStrategy builds "
        "the write, before the bulk write goes out, in whole milliseconds: it leaves the write "
        "out, a few ms in the connector's favour.)"
    )
    seen_report(results, rates)
    for result in results:
        if result.batches is None:
            continue
        print(
            f"\n{result.system} at {result.rate:.0f} events/s, live phase only "
            f"(/metrics before and after, {result.seconds:.1f} s):"
        )
        print(f"  {result.batches.phase_line()}")
        print(
            "  database round trips per batch (ledger_mongodb_command_seconds counts by "
            f"command and collection, over batches): {result.batches.round_trip_line()}"
        )
        if background := result.background_line():
            print(f"  of which {background}")
        print(f"  MongoDB ms per batch: {result.batches.command_line()}")


def print_rows(rate: float, services: list[Latency], peer: Latency | None, width: int) -> None:
    """A line per service phase at a rate: its p50 / p99 / max, the peer's, and the ratios."""
    rows: list[Latency | None] = [*services] or [None]
    for service in rows:
        name = service.system.split("(")[-1].rstrip(")") if service else "-"
        ratios = (
            f"{service.p50 / peer.p50:>7.2f}x {service.p99 / peer.p99:>7.2f}x"
            if service and peer
            else f"{'-':>8} {'-':>8}"
        )
        print(
            f"{rate:>5.0f}/s  {name:<10} {service.spread() if service else '-':>28} "
            f"{peer.spread() if peer else '-':>{width}} {ratios}"
        )


def seen_report(results: list[Latency], rates: list[float]) -> None:
    """The connector's second measure, from the same events of the same phase: up to its
    document seen by a reader in the bench process, its write and commit included as the
    service's figure includes its own; with the reader's own delay (the control)."""
    connectors = [r for r in results if r.system == CONNECTOR and r.seen is not None]
    if not connectors:
        return
    print(
        "\nthe same connector phases, to the document seen by a reader in the bench process "
        "(event handed to the producer -> the reader sees its document; the connector's write "
        "and commit included, as the service's figure includes its own):"
    )
    print(
        f"\n{'rate':>7}  {'service':<10} {'service p50 / p99 / max ms':>28} "
        f"{'connector, seen p50 / p99 / max':>32} {'p50 ÷':>8} {'p99 ÷':>8}"
    )
    for rate in rates:
        connector = next((r for r in connectors if r.rate == rate), None)
        if connector is None or connector.seen is None:
            continue
        services = [r for r in results if r.rate == rate and r.system != CONNECTOR]
        print_rows(rate, services, connector.seen, 32)
        if connector.control is not None:
            print(f"{'':>9}{connector.control.line()}")
    print(
        "\n(÷: the service's figure over the connector's document seen by the reader. The "
        "reader's own delay is the control's: when it is within a ms, the gap between the two "
        "connector figures is the connector's write and commit (from stamping `_insertedTS` to "
        "the commit), measured side by side with the service on this machine.)"
    )


# ---- reporting


def versions_line(kafka_version: str) -> str:
    java = subprocess.run(  # noqa: S603 - the JDK dev/servers/ runs
        [find_java(), "-version"], capture_output=True, text=True, check=False
    ).stderr.splitlines()[0]
    packages = ("campaign-ledger", "SecantusDB", "pymongo", "aiokafka", "faststream")
    found = []
    for name in packages:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found.append(f"{name} {importlib.metadata.version(name)}")
    return (
        f"versions: Kafka {kafka_version} (broker and Connect), mongo-kafka-connect "
        f"{connector_version()}, {', '.join(found)}, Python {platform.python_version()}, {java}"
    )


def pom_property(name: str) -> str:
    text = CONNECT_POM.read_text()
    return text.split(f"<{name}>", 1)[1].split("<", 1)[0]


def connector_version() -> str:
    return pom_property("mongo.connector.version")


def report(drains: list[Drain]) -> None:
    by_system: dict[str, list[Drain]] = {}
    for drain in drains:
        by_system.setdefault(drain.system, []).append(drain)
    medians = {s: statistics.median(d.rate for d in ds) for s, ds in by_system.items()}
    print(
        f"\n{'system':<44} {'events/s min/median/max':>26} "
        f"{'own µs/ev':>10} {'db µs/ev':>9} {'broker µs/ev':>13}"
    )
    for system, runs in by_system.items():
        rates = sorted(d.rate for d in runs)
        own = statistics.median(d.per_event_us(0) for d in runs)
        db = statistics.median(d.per_event_us(1) for d in runs)
        broker = statistics.median(d.per_event_us(2) for d in runs)
        print(
            f"{system:<44} {rates[0]:>8,.0f} / {medians[system]:>6,.0f} / {rates[-1]:>6,.0f} "
            f"{own:>10,.0f} {db:>9,.0f} {broker:>13,.0f}"
        )
    connector = medians.get(CONNECTOR)
    ceiling = medians.get("raw ceiling")
    for system, rate in medians.items():
        if system.startswith("campaign-ledger"):
            parts = []
            if connector:
                parts.append(f"{rate / connector:.2f}x the connector")
            if ceiling:
                parts.append(f"{rate / ceiling:.0%} of the raw transactional ceiling")
            print(f"{system}: {', '.join(parts)}")
    for system, runs in by_system.items():
        rss = [d.extra["rss_mb"] for d in runs if "rss_mb" in d.extra]
        if rss:
            print(f"{system}: RSS at the end {statistics.median(rss):.0f} MB")


def print_drain(round_: int, drain: Drain) -> None:
    print(
        f"round {round_}: {drain.system:<40} {drain.rate:>7,.0f} events/s "
        f"({drain.events:,} in {drain.seconds:.1f}s; CPU µs/event own "
        f"{drain.per_event_us(0):,.0f}, database {drain.per_event_us(1):,.0f}, "
        f"broker {drain.per_event_us(2):,.0f})",
        flush=True,
    )


# ---- tracing (--tracing)

# What each mode adds to the service's environment; "off" is no OTEL_* variable at all.
TRACING_SAMPLERS = {
    "off": None,
    "on100": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
    "on1": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"},
}


def tracing_collector(modes: list[str], tmp: Path) -> Any:
    """A local Jaeger when any mode exports (it stores what it receives, so the export is
    paid in full: an unreachable endpoint would cost less)."""
    unknown = set(modes) - TRACING_SAMPLERS.keys()
    if unknown:
        raise SystemExit(f"unknown --tracing modes {sorted(unknown)}; known: off, on100, on1")
    if all(TRACING_SAMPLERS[m] is None for m in modes):
        return None
    from dev.jaeger import Jaeger  # noqa: PLC0415 - only when tracing is measured

    jaeger = Jaeger(log=tmp / "jaeger.log").start()
    print(f"tracing: OTLP/HTTP to Jaeger at {jaeger.otlp_endpoint}", flush=True)
    return jaeger


async def traced_drains(bench: Bench, modes: list[str], jaeger: Any, round_: int) -> list[Drain]:
    drains = []
    for mode in modes:
        drain = await bench.service("every", tracing_env(mode, jaeger), f", tracing {mode}")
        print_drain(round_, drain)
        drains.append(drain)
    return drains


def tracing_env(mode: str, jaeger: Any) -> dict[str, str]:
    sampler = TRACING_SAMPLERS[mode]
    if sampler is None:
        return {}
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_endpoint,
        # the SDK's default queue (2,048 spans) would drop most spans of a 5,000-record
        # batch, and dropping costs less than exporting: every span is exported here
        "OTEL_BSP_MAX_QUEUE_SIZE": "200000",
        **sampler,
    }


# ---- main


@contextlib.contextmanager
def servers(tmp: Path) -> Iterator[tuple[str, str, Pids]]:
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    mongo = os.environ.get("MONGODB_URI")
    with contextlib.ExitStack() as stop:
        broker_pid = db_pid = None
        if not kafka:
            port, controller = free_ports(2)
            server = KafkaServer(
                tmp / "kafka", port=port, controller_port=controller, die_with_parent=True
            )
            stop.enter_context(server)
            kafka, broker_pid = server.bootstrap_servers, server.pid
        if not mongo:
            mongo_server = MongoServer(
                tmp / "mongo", port=free_port(), sync_on_commit=True, die_with_parent=True
            )
            stop.enter_context(mongo_server)
            mongo, db_pid = mongo_server.uri, mongo_server.pid
        yield kafka, mongo, Pids(db_pid, broker_pid)


async def run(args: argparse.Namespace) -> None:
    systems = names(args.systems, ("service", "latest", "connector", "ceiling", "ceiling-notx"))
    latency_systems = names(args.latency_systems, ("service", "connector", "floor"))
    modes = [m.strip() for m in args.tracing.split(",") if m.strip()]
    if "connector" in systems or "connector" in latency_systems:
        ensure_kafka_jars(CONNECT_LIB, CONNECT_POM)
    with (
        tempfile.TemporaryDirectory(prefix="ledger-compare-", dir=args.workdir) as tmp,
        servers(Path(tmp)) as (kafka, mongo, pids),
    ):
        if args.db_pid:
            pids.database = args.db_pid
        if args.broker_pid:
            pids.broker = args.broker_pid
        print(versions_line(pom_property("kafka.version")))
        print(f"servers: kafka {kafka}, mongodb {mongo.split('@')[-1]} (sync on commit)")
        tag = f"cmp-{uuid.uuid4().hex[:6]}"
        topic = f"{tag}.artifact"
        bench = Bench(
            kafka,
            mongo,
            pids,
            topic,
            args.campaigns * args.versions,
            tag,
            args.campaigns,
            args.versions,
            Path(tmp),
            args.role,
        )
        print(f"service role: --role {args.role}", flush=True)
        if args.rounds and systems:
            await create_topics(kafka, [topic])
            records = artifact_events(tag, args.campaigns, args.versions)
            sizes = [len(v) for _, v in records]
            await produce_all(kafka, topic, records)
            print(
                f"events: {len(records):,} artifact events pre-produced ({args.campaigns} "
                f"campaigns x {args.versions} versions, {statistics.mean(sizes):.0f} bytes on "
                f"average, {PARTITIONS} partitions)",
                flush=True,
            )
            jaeger = tracing_collector(modes, Path(tmp))
            try:
                await drains(bench, systems, args.rounds, modes, jaeger)
            finally:
                if jaeger is not None:
                    jaeger.stop()
        if args.latency_rates and latency_systems:
            results: list[Latency] = []
            for rate in args.latency_rates:
                # One set of events per rate, the same for every system.
                live = f"lat-{uuid.uuid4().hex[:6]}"
                records = live_records(live, rate, args.latency_seconds)
                for system in latency_systems:
                    done = len(results)
                    if system == "connector":
                        results.append(await connector_latency(bench, live, records, rate))
                    elif system == "floor":
                        results.append(await floor_latency(bench, live, records, rate))
                    else:
                        for publication in args.latency_publication:
                            for variant in [None, *args.latency_variant]:
                                results.append(
                                    await service_latency(
                                        bench, live, records, rate, publication, variant=variant
                                    )
                                )
                    for result in results[done:]:
                        for shown in filter(None, (result, result.seen)):
                            print(
                                f"latency at {rate:.0f} events/s, {shown.system}: "
                                f"{len(shown.delays):,} events, p50 / p99 / max "
                                f"{shown.spread()} ms",
                                flush=True,
                            )
            latency_report(results, args.latency_seconds)
        if args.fill:
            await fill(bench, args.fill)


def names(listed: str, known: tuple[str, ...]) -> list[str]:
    chosen = [s.strip() for s in listed.split(",") if s.strip()]
    if unknown := [s for s in chosen if s not in known]:
        raise SystemExit(f"unknown system {', '.join(unknown)}; known: {', '.join(known)}")
    return chosen


async def drains(
    bench: Bench, systems: list[str], rounds: int, modes: list[str], jaeger: Any
) -> None:
    """Alternate the systems round by round; with `--tracing`, the service once per mode."""
    results: list[Drain] = []
    for round_ in range(1, rounds + 1):
        for system in [s for s in systems if s != "service"] if modes else systems:
            if system == "service":
                drain = await bench.service("every")
            elif system == "latest":
                drain = await bench.service("latest")
            elif system == "connector":
                drain = await bench.connector()
            elif system == "ceiling":
                drain = await bench.ceiling(transaction=True)
            else:
                drain = await bench.ceiling(transaction=False)
            results.append(drain)
            print_drain(round_, drain)
            if batches := drain.extra.get("batches"):
                print(f"         per batch: {batches.phase_line()}")
                print(f"         MongoDB ms per batch: {batches.command_line()}", flush=True)
        if modes and "service" in systems:
            results += await traced_drains(bench, modes, jaeger, round_)
    report(results)


async def fill(bench: Bench, target: int) -> None:
    """Drain rate and RSS as the database fills, with the raw ceiling at the same fill."""
    child = await service_child(bench.kafka, bench.mongo, bench.role)
    database = child.env["MONGODB_DATABASE"]
    ceiling_db = f"ceiling_fill_{uuid.uuid4().hex[:6]}"
    tag = f"fill-{uuid.uuid4().hex[:6]}"
    topic = f"{tag}.artifact"
    await create_topics(bench.kafka, [topic])
    child.env.update(
        {
            "TOPIC_ARTIFACT_GENERATED": topic,
            "SNAPSHOT_PUBLICATION": "every",
            "KAFKA_TOPIC_PARTITIONS": str(PARTITIONS),
        }
    )
    group = child.env["KAFKA_GROUP_ID"]
    admin = AIOKafkaAdminClient(bootstrap_servers=bench.kafka)
    await admin.start()
    await child.start()
    assert child.process is not None
    pid = child.process.pid
    step = bench.campaigns * bench.versions
    print(
        f"fill: {target:,} events into one database, {step:,} at a time (service `every`, "
        f"--role {bench.role}); the raw ceiling upserts the same steps into a database of its own",
        flush=True,
    )
    rows: list[FillRow] = []
    stored = 0
    try:
        while stored < target:
            first_version = stored // bench.campaigns + 1
            records = artifact_events(
                tag, bench.campaigns, bench.versions, first_version=first_version
            )
            await produce_all(bench.kafka, topic, records)
            ends = await end_offsets(bench.kafka, topic)
            first = [version_id(c, first_version) for c in campaign_ids(tag, bench.campaigns)]

            async def progress(first: list[str] = first) -> int:
                return await present(bench.mongo, database, "versions", first)

            async def done(ends: dict[TopicPartition, int] = ends) -> bool:
                offsets = await committed(admin, group)
                return all(offsets.get(tp, -1) >= end for tp, end in ends.items())

            drain = await watch_drain(
                "fill",
                len(records),
                progress=progress,
                done=done,
                own_pid=lambda: pid,
                pids=bench.pids,
            )
            ceiling = await bench.ceiling(
                transaction=True, offset=first_version - 1, database=ceiling_db, tag=tag
            )
            before, stored = stored, stored + len(records)
            row = FillRow(stored, drain.rate, ceiling.rate, rss_mb(pid))
            rows.append(row)
            # Every 100,000 (the step need not divide it), the first step and the last.
            if len(rows) == 1 or stored >= target or stored // 100_000 > before // 100_000:
                print(f"fill: {row.line()}", flush=True)
        fill_report(rows)
    finally:
        child.stop()
        await admin.close()
        await drop(bench.mongo, database)
        await drop(bench.mongo, ceiling_db)


@dataclass(frozen=True)
class FillRow:
    stored: int  # events stored once this step was done
    rate: float  # the service's drain rate over this step
    ceiling: float  # the raw ceiling's over the same step, at the same fill
    rss: float  # the service's RSS after this step, MB

    def line(self) -> str:
        return (
            f"{self.stored:>9,} stored: service {self.rate:>6,.0f} events/s, raw ceiling "
            f"{self.ceiling:>6,.0f} docs/s, service ÷ ceiling {self.rate / self.ceiling:.2f}, "
            f"service RSS {self.rss:.0f} MB"
        )


def fill_report(rows: list[FillRow]) -> None:
    """The first step, the step that reached 100,000 and the last, side by side."""
    if not rows:
        return
    marks = [rows[0]]
    if reached := next((r for r in rows if r.stored >= 100_000), None):
        marks.append(reached)
    marks.append(rows[-1])
    print(
        f"\n{'stored':>9}  {'service events/s':>16}  {'raw ceiling docs/s':>18}  "
        f"{'service ÷ ceiling':>17}  {'service RSS MB':>14}"
    )
    for row in dict.fromkeys(marks):
        print(
            f"{row.stored:>9,}  {row.rate:>16,.0f}  {row.ceiling:>18,.0f}  "
            f"{row.rate / row.ceiling:>17.2f}  {row.rss:>14.0f}"
        )
    first, last = rows[0], rows[-1]
    print(
        f"at {last.stored:,} stored the service drains at {last.rate / first.rate:.0%} of its "
        f"rate over the first {first.stored:,}, the raw ceiling at "
        f"{last.ceiling / first.ceiling:.0%} of its own; service RSS {first.rss:.0f} -> "
        f"{last.rss:.0f} MB (each line: the step that brought the fill there)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="make bench-compare",
        description="campaign-ledger beside the MongoDB Kafka sink connector and the raw "
        "database ceiling: drain rate and CPU, live latency, and a long fill (bench/README.md)",
    )
    drain = parser.add_argument_group("drain")
    drain.add_argument("--rounds", type=int, default=3, help="alternated rounds (0: none)")
    drain.add_argument(
        "--systems",
        default="service,latest,connector,ceiling,ceiling-notx",
        help="comma-separated: service (every), latest, connector, ceiling, ceiling-notx",
    )
    drain.add_argument(
        "--campaigns", type=int, default=200, help="x versions: the drain's events, the fill's step"
    )
    drain.add_argument("--versions", type=int, default=100, help="per campaign")
    live = parser.add_argument_group("latency")
    live.add_argument(
        "--latency-systems",
        default="service,connector,floor",
        help="comma-separated: service, connector, floor (bench/floor.py)",
    )
    live.add_argument(
        "--latency-rates",
        type=float,
        nargs="*",
        default=[100.0, 300.0],
        metavar="RATE",
        help="events/s, one phase per system each (none: no latency phases)",
    )
    live.add_argument("--latency-seconds", type=float, default=30.0, help="per rate and system")
    live.add_argument(
        "--latency-publication",
        nargs="*",
        default=["every"],
        choices=("every", "latest"),
        help="the service's SNAPSHOT_PUBLICATION, one phase each",
    )
    live.add_argument(
        "--latency-variant",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="one more service phase per rate for each, with this setting changed (side by "
        "side with the defaults in one run)",
    )
    parser.add_argument(
        "--fill",
        type=int,
        nargs="?",
        const=1_000_000,
        default=0,
        metavar="N",
        help="drain N events (1,000,000 without N) into one database, the raw ceiling beside",
    )
    parser.add_argument(
        "--role",
        choices=("consumer", "all"),
        default="consumer",
        help="the service's role: consumer, as a sink is deployed (k8s/), or all (make run), "
        "which also follows the snapshot topic for the HTTP streams",
    )
    parser.add_argument(
        "--tracing",
        default="",
        help="comma-separated modes for the service (every): off, on100 (every trace "
        "sampled), on1 (1 %% of new traces); on exports over OTLP to a local Jaeger "
        "(dev/jaeger.py). Default: no OTEL_* variable at all, as before",
    )
    parser.add_argument("--workdir", help="where the servers' data and logs go (default /tmp)")
    parser.add_argument("--db-pid", type=int, help="the database's pid, for external servers")
    parser.add_argument("--broker-pid", type=int, help="the broker's pid, for external servers")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
