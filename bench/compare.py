"""`make bench-compare`: campaign-ledger beside the official MongoDB Kafka sink connector and
the raw database ceiling, on one broker, one database and the same events (issue 9).

1. Pre-produces 20,000 `campaign.artifact.generated` events (200 campaigns x 100 versions,
   about 430 bytes, 6 partitions, keyed by campaign) once.
2. Alternates rounds; in each, every system drains those events into an empty database:
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
3. Latency: the service alone, events at a steady 100 and 300 events/s, from the moment an
   event is handed to the producer to the moment the snapshot revision it made (or a later
   one) is read from the snapshot topic.
4. `--fill`: drain rate and RSS after 1,000,000 stored events against an empty database,
   with the raw ceiling at the same fill beside it (tens of minutes).

Servers: its own Kafka and SecantusDB (--sync-on-commit) from dev/stack.py, unless
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
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import AsyncMongoClient

from bench.__main__ import Child
from bench.events import artifact_events, campaign_ids, event_id, version_id
from dev import stack

REPO = Path(__file__).resolve().parent.parent
CONNECT_POM = REPO / "bench" / "connect" / "pom.xml"
CONNECT_LIB = REPO / ".cache" / "connect" / "lib"
PARTITIONS = 6
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
POLL = 0.25

Document = dict[str, Any]


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
            drain.extra["phases"] = await batch_phases(child.url)
            return drain
        finally:
            child.stop()
            await admin.close()
            await drop(self.mongo, database)

    async def connector(self) -> Drain:
        name = f"sink-{uuid.uuid4().hex[:8]}"
        database = f"connect_{name[5:]}"
        workdir = self.tmp / name
        workdir.mkdir()
        worker = workdir / "worker.properties"
        worker.write_text(
            "\n".join(
                [
                    f"bootstrap.servers={self.kafka}",
                    "key.converter=org.apache.kafka.connect.storage.StringConverter",
                    "value.converter=org.apache.kafka.connect.json.JsonConverter",
                    "value.converter.schemas.enable=false",
                    f"offset.storage.file.filename={workdir / 'offsets'}",
                    "offset.flush.interval.ms=1000",
                    "listeners=http://127.0.0.1:0",
                    "consumer.max.poll.records=500",
                    "consumer.auto.offset.reset=earliest",
                    "plugin.discovery=only_scan",
                ]
            )
            + "\n"
        )
        sink = workdir / "sink.properties"
        sink.write_text(
            "\n".join(
                [
                    f"name={name}",
                    "connector.class=com.mongodb.kafka.connect.MongoSinkConnector",
                    "tasks.max=1",
                    f"topics={self.topic}",
                    f"connection.uri={self.mongo}",
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
                ]
            )
            + "\n"
        )
        log = (workdir / "connect.log").open("wb")
        process = subprocess.Popen(  # noqa: ASYNC220, S603 - our own command line
            [
                stack.find_java(),
                "-Xms256m",
                "-Xmx1g",
                f"-Dlog4j2.configurationFile={stack.KAFKA_LOG4J2_CONFIG}",
                "-cp",
                f"{CONNECT_LIB}/*",
                "org.apache.kafka.connect.cli.ConnectStandalone",
                str(worker),
                str(sink),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        campaigns = campaign_ids(self.tag, self.campaigns)
        first = [event_id(c, 1) for c in campaigns]
        last = [event_id(c, self.versions) for c in campaigns]

        async def progress() -> int:
            if process.poll() is not None:
                raise SystemExit(f"Kafka Connect exited; see {workdir / 'connect.log'}")
            return await present(self.mongo, database, "events", first)

        async def done() -> bool:
            # The last event of every campaign, then (once, at the end) the exact count.
            return await present(self.mongo, database, "events", last) == len(last) and (
                await count(self.mongo, database, "events") >= self.total
            )

        try:
            drain = await watch_drain(
                "MongoDB sink connector",
                self.total,
                progress=progress,
                done=done,
                own_pid=lambda: process.pid,
                pids=self.pids,
            )
            drain.extra["rss_mb"] = rss_mb(process.pid)
            return drain
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
            await drop(self.mongo, database)

    async def ceiling(self, *, transaction: bool, offset: int = 0, database: str = "") -> Drain:
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
            self.tag,
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


# ---- latency


async def latency(bench: Bench, rate: float, seconds: float, publication: str) -> dict[str, float]:
    """Event handed to the producer -> its revision (or a later one) read from the topic."""
    tag = f"lat-{uuid.uuid4().hex[:6]}"
    total = int(rate * seconds)
    campaigns = 50
    records = artifact_events(tag, campaigns, -(-total // campaigns))[:total]
    topic = f"{tag}.artifact"
    await create_topics(bench.kafka, [topic])
    child = await service_child(bench.kafka, bench.mongo, bench.role)
    child.env.update(
        {
            "TOPIC_ARTIFACT_GENERATED": topic,
            "SNAPSHOT_PUBLICATION": publication,
            "KAFKA_TOPIC_PARTITIONS": str(PARTITIONS),
        }
    )
    await child.start()
    reader = AIOKafkaConsumer(bootstrap_servers=bench.kafka, fetch_max_wait_ms=5)
    sent: dict[str, list[float]] = {c: [] for c in campaign_ids(tag, campaigns)}
    arrived: dict[str, list[tuple[int, float]]] = {c: [] for c in sent}
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
        await warm_up(producer, topic, tag, arrived)
        started = time.perf_counter()
        for index, (key, value) in enumerate(records):
            due = started + index / rate
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            sent[key.decode()].append(time.perf_counter())
            await producer.send(topic, value, key=key)
        await producer.flush()
        await producer.stop()
        deadline = time.monotonic() + 120
        while any(
            not arrived[c] or max(r for r, _ in arrived[c]) < len(sent[c]) for c in sent if sent[c]
        ):
            if time.monotonic() > deadline:
                raise SystemExit("latency run: snapshots missing after 120 s")
            await asyncio.sleep(0.1)
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
        phases = await batch_phases(child.url)
    finally:
        await reader.stop()
        child.stop()
        await drop(bench.mongo, child.env["MONGODB_DATABASE"])
    return percentiles(sent, arrived) | phases


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


async def batch_phases(url: str) -> dict[str, float]:
    """Mean seconds per batch of each phase, and records per batch, from /metrics; and the
    MongoDB commands' seconds per batch, by command and collection (`mongo_<command> <coll>`).
    """
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{url}/metrics")).text
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    commands: dict[str, float] = {}
    for line in text.splitlines():
        for name, into in (("_sum", sums), ("_count", counts)):
            for metric in ("ledger_batch_phase_seconds", "ledger_batch_records"):
                if line.startswith(metric + name):
                    label = (
                        line.split('phase="')[1].split('"')[0] if "phase=" in line else "records"
                    )
                    into[label] = float(line.rsplit(" ", 1)[1])
        if line.startswith("ledger_mongodb_command_seconds_sum"):
            command = line.split('command="')[1].split('"')[0]
            collection = line.split('collection="')[1].split('"')[0]
            commands[f"mongo_{command} {collection}".strip()] = float(line.rsplit(" ", 1)[1])
    phases = {f"phase_{k}": v / counts[k] for k, v in sums.items() if counts.get(k)}
    if batches := counts.get("records"):
        phases |= {k: v / batches for k, v in commands.items()}
    return phases


def phase_line(phases: dict[str, float]) -> str:
    """`batch_phases` as one line: records per batch, then milliseconds per phase."""
    return ", ".join(
        f"{k[6:]} {v * 1000:.0f} ms" if k != "phase_records" else f"{v:.0f} records"
        for k, v in phases.items()
        if k.startswith("phase_")
    )


def command_line(phases: dict[str, float], top: int = 8) -> str:
    """The MongoDB commands that took most of a batch's time, in milliseconds per batch."""
    commands = sorted(
        ((k[6:], v) for k, v in phases.items() if k.startswith("mongo_")), key=lambda kv: -kv[1]
    )
    return ", ".join(f"{name} {seconds * 1000:.1f}" for name, seconds in commands[:top])


def percentiles(
    sent: dict[str, list[float]], arrived: dict[str, list[tuple[int, float]]]
) -> dict[str, float]:
    """Per event: the first published revision at or past the one it made, minus its send."""
    delays = []
    for campaign, times in sent.items():
        seen = sorted(arrived[campaign], key=lambda item: item[1])
        for revision, at in enumerate(times, start=1):
            first = next(t for r, t in seen if r >= revision)
            delays.append((first - at) * 1000)
    delays.sort()
    return {
        "events": len(delays),
        "p50": statistics.median(delays),
        "p99": delays[min(len(delays) - 1, int(len(delays) * 0.99))],
        "max": delays[-1],
    }


# ---- reporting


def versions_line(kafka_version: str) -> str:
    java = subprocess.run(  # noqa: S603 - the JDK dev/stack.py runs
        [stack.find_java(), "-version"], capture_output=True, text=True, check=False
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
    connector = medians.get("MongoDB sink connector")
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


def connector_jars(systems: str) -> None:
    """Kafka Connect and the sink connector from Maven Central, when the connector runs."""
    if "connector" in systems:
        stack.ensure_kafka_jars(CONNECT_LIB, CONNECT_POM)


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
            port, controller = stack.free_ports(2)
            server = stack.KafkaServer(
                tmp / "kafka", port=port, controller_port=controller, die_with_parent=True
            )
            stop.enter_context(server)
            kafka, broker_pid = server.bootstrap_servers, server.pid
        if not mongo:
            mongo_server = stack.MongoServer(
                tmp / "mongo", port=stack.free_port(), sync_on_commit=True, die_with_parent=True
            )
            stop.enter_context(mongo_server)
            mongo, db_pid = mongo_server.uri, mongo_server.pid
        yield kafka, mongo, Pids(db_pid, broker_pid)


async def run(args: argparse.Namespace) -> None:
    connector_jars(args.systems)
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
        await create_topics(kafka, [topic])
        records = artifact_events(tag, args.campaigns, args.versions)
        sizes = [len(v) for _, v in records]
        await produce_all(kafka, topic, records)
        print(
            f"events: {len(records):,} artifact events pre-produced ({args.campaigns} campaigns "
            f"x {args.versions} versions, {statistics.mean(sizes):.0f} bytes on average, "
            f"{PARTITIONS} partitions)",
            flush=True,
        )
        bench = Bench(
            kafka,
            mongo,
            pids,
            topic,
            len(records),
            tag,
            args.campaigns,
            args.versions,
            Path(tmp),
            args.role,
        )
        print(f"service role: --role {args.role}", flush=True)
        systems = [s.strip() for s in args.systems.split(",") if s.strip()]
        modes = [m.strip() for m in args.tracing.split(",") if m.strip()]
        jaeger = tracing_collector(modes, Path(tmp))
        drains: list[Drain] = []
        for round_ in range(1, args.rounds + 1):
            for system in [s for s in systems if s != "service"] if modes else systems:
                if system == "service":
                    drain = await bench.service("every")
                elif system == "latest":
                    drain = await bench.service("latest")
                elif system == "connector":
                    drain = await bench.connector()
                elif system == "ceiling":
                    drain = await bench.ceiling(transaction=True)
                elif system == "ceiling-notx":
                    drain = await bench.ceiling(transaction=False)
                else:
                    raise SystemExit(f"unknown system {system}")
                drains.append(drain)
                print_drain(round_, drain)
                if phases := drain.extra.get("phases"):
                    print(f"         per batch: {phase_line(phases)}", flush=True)
                    print(f"         MongoDB ms per batch: {command_line(phases)}", flush=True)
            if "service" in systems:
                drains += await traced_drains(bench, modes, jaeger, round_)
        if jaeger is not None:
            jaeger.stop()
        if drains:
            report(drains)
        for rate in args.latency_rates:
            for publication in args.latency_publication:
                result = await latency(bench, rate, args.latency_seconds, publication)
                phases = phase_line(result)
                print(
                    f"latency at {rate:.0f} events/s ({publication}, {result['events']:,} "
                    f"events): p50 {result['p50']:.0f} ms, p99 {result['p99']:.0f} ms, "
                    f"max {result['max']:.0f} ms; per batch: {phases}",
                    flush=True,
                )
                print(f"         MongoDB ms per batch: {command_line(result)}", flush=True)
        if args.fill:
            await fill(bench, args.fill)


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
    stored = 0
    step = bench.campaigns * bench.versions
    checkpoints = {step, 100_000, target}
    try:
        while stored < target:
            versions = bench.versions
            records = artifact_events(
                tag, bench.campaigns, versions, first_version=stored // bench.campaigns + 1
            )
            await produce_all(bench.kafka, topic, records)
            ends = await end_offsets(bench.kafka, topic)

            first = [
                version_id(c, stored // bench.campaigns + 1)
                for c in campaign_ids(tag, bench.campaigns)
            ]

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
                transaction=True, offset=stored // bench.campaigns, database=ceiling_db
            )
            stored += len(records)
            if stored in checkpoints or stored % 100_000 == 0:
                print(
                    f"fill: {stored:>9,} stored: service {drain.rate:,.0f} events/s, raw ceiling "
                    f"{ceiling.rate:,.0f} docs/s, service RSS {rss_mb(pid):.0f} MB",
                    flush=True,
                )
    finally:
        child.stop()
        await admin.close()
        await drop(bench.mongo, database)
        await drop(bench.mongo, ceiling_db)


def main() -> None:
    parser = argparse.ArgumentParser(prog="make bench-compare")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--systems",
        default="service,latest,connector,ceiling,ceiling-notx",
        help="comma-separated: service (every), latest, connector, ceiling, ceiling-notx",
    )
    parser.add_argument("--campaigns", type=int, default=200)
    parser.add_argument("--versions", type=int, default=100, help="per campaign")
    parser.add_argument("--latency-rates", type=float, nargs="*", default=[100.0, 300.0])
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument("--latency-publication", nargs="*", default=["every"])
    parser.add_argument(
        "--fill", type=int, nargs="?", const=1_000_000, default=0, help="fill run to N events"
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
