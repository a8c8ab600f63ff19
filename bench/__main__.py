"""`make bench`: throughput and snapshot-read figures on real servers.

Runs `campaign-ledger serve` as a child process against local Kafka and the MongoDB-compatible
server (or those named by KAFKA_BOOTSTRAP_SERVERS / MONGODB_URI), and prints:
- consume throughput: a mixed campaign stream, events per second until every event's
  snapshot revision is on the snapshot topic;
- snapshot read latency: GET /campaigns/{id}/snapshot over HTTP for a campaign with 10,000
  versions, median and 99th percentile over several hundred reads.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from dev.servers.common import free_port, free_ports
from dev.servers.kafka import KafkaServer
from dev.servers.mongo import MongoServer

REPO = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def servers() -> Iterator[tuple[str, str]]:
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    mongo = os.environ.get("MONGODB_URI")
    with tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmp, contextlib.ExitStack() as stop:
        if not kafka:
            port, controller = free_ports(2)
            server = KafkaServer(Path(tmp) / "kafka", port=port, controller_port=controller)
            stop.enter_context(server)
            kafka = server.bootstrap_servers
        if not mongo:
            mongo_server = MongoServer(Path(tmp) / "mongo", port=free_port())
            stop.enter_context(mongo_server)
            mongo = mongo_server.uri
        yield kafka, mongo


def event(event_type: str, data: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": uuid.uuid4().hex,
            "source": "bench",
            "type": event_type,
            "time": "2026-11-26T10:00:00Z",
            "data": data,
        }
    )


def campaign_stream(campaign: str, versions_per_artifact: int) -> list[tuple[str, bytes]]:
    """A realistic mix: per artifact, versions with an audit each and feedback between."""
    out: list[tuple[str, bytes]] = [
        ("lifecycle", event("campaign.created", {"campaign_id": campaign, "name": campaign}))
    ]
    for kind in ("copy", "short_copy", "visual_concept"):
        artifact = f"{campaign}.{kind}"
        for n in range(1, versions_per_artifact + 1):
            version = f"{artifact}.v{n}"
            out.append(
                (
                    "artifact",
                    event(
                        "campaign.artifact.generated",
                        {
                            "campaign_id": campaign,
                            "artifact_id": artifact,
                            "artifact_type": kind,
                            "version_id": version,
                            "content": {"headline": f"Take {n}", "body": "lorem ipsum " * 20},
                        },
                    ),
                )
            )
            out.append(
                (
                    "audit",
                    event(
                        "campaign.audit.completed",
                        {
                            "campaign_id": campaign,
                            "version_id": version,
                            "outcome": "pass" if n == versions_per_artifact else "fail",
                            "category_scores": {"brand_voice": {"score": 60 + n % 40}},
                        },
                    ),
                )
            )
            if n < versions_per_artifact:
                out.append(
                    (
                        "feedback",
                        event(
                            "campaign.feedback.submitted",
                            {
                                "campaign_id": campaign,
                                "artifact_id": artifact,
                                "version_id": version,
                                "feedback_text": "warmer tone, please",
                            },
                        ),
                    )
                )
    return out


class Child:
    """`campaign-ledger serve` with its own topics, group and database."""

    def __init__(self, kafka: str, mongo: str) -> None:
        tag = uuid.uuid4().hex[:8]
        self.topics = {
            k: f"bench-{tag}.{k}"
            for k in ("artifact", "audit", "feedback", "lifecycle", "snapshot", "dead")
        }
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": kafka,
            "MONGODB_URI": mongo,
            "MONGODB_DATABASE": f"bench_{tag}",
            "KAFKA_GROUP_ID": f"bench-{tag}",
            "HTTP_PORT": str(self.port),
            "LOG_LEVEL": "WARNING",
            "TOPIC_ARTIFACT_GENERATED": self.topics["artifact"],
            "TOPIC_AUDIT_COMPLETED": self.topics["audit"],
            "TOPIC_FEEDBACK": self.topics["feedback"],
            "TOPIC_LIFECYCLE": self.topics["lifecycle"],
            "TOPIC_SNAPSHOT_UPDATED": self.topics["snapshot"],
            "TOPIC_DEAD_LETTER": self.topics["dead"],
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.serve_args: list[str] = []  # e.g. ["--role", "api"] (bench/streams.py --split)

    async def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: ASYNC220, S603 - started once; our own command
            [sys.executable, "-m", "service", "serve", *self.serve_args], env=self.env, cwd=REPO
        )
        async with httpx.AsyncClient() as client:
            for _ in range(240):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.25)
        raise SystemExit("the service did not become ready")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)


async def produce(kafka: str, child: Child, stream: list[tuple[str, bytes, str]]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    pending = [
        await producer.send(child.topics[kind], value, key=campaign.encode())
        for kind, value, campaign in stream
    ]
    await asyncio.gather(*pending)
    await producer.stop()
    return started


async def wait_revisions(kafka: str, topic: str, expected: dict[str, int], timeout: float) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = None
        while not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        await consumer.seek_to_beginning()
        seen = dict.fromkeys(expected, 0)
        deadline = time.monotonic() + timeout
        while any(seen[c] < expected[c] for c in expected):
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out: {sum(seen.values())} of {sum(expected.values())}")
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    data = orjson.loads(record.value)["data"]
                    seen[data["campaign_id"]] = max(seen[data["campaign_id"]], data["revision"])
        return time.perf_counter()
    finally:
        await consumer.stop()


async def throughput(kafka: str, mongo: str, campaigns: int, versions: int) -> None:
    child = Child(kafka, mongo)
    await child.start()
    try:
        ids = [f"bench-{uuid.uuid4().hex[:6]}" for _ in range(campaigns)]
        streams = {c: campaign_stream(c, versions) for c in ids}
        # interleave the campaigns, as many agents writing at once would
        mixed: list[tuple[str, bytes, str]] = []
        for i in range(max(len(s) for s in streams.values())):
            mixed += [(s[i][0], s[i][1], c) for c, s in streams.items() if i < len(s)]
        expected = {c: len(s) for c, s in streams.items()}  # every event here changes state
        waiter = asyncio.create_task(
            wait_revisions(kafka, child.topics["snapshot"], expected, timeout=600)
        )
        started = await produce(kafka, child, mixed)
        finished = await waiter
        seconds = finished - started
        print(
            f"throughput: {len(mixed)} mixed events ({campaigns} campaigns) stored and "
            f"published in {seconds:.1f}s = {len(mixed) / seconds:,.0f} events/s "
            f"(one instance, each event one snapshot revision)"
        )
    finally:
        child.stop()


async def snapshot_reads(kafka: str, mongo: str, versions: int, reads: int) -> None:
    child = Child(kafka, mongo)
    await child.start()
    try:
        campaign = f"big-{uuid.uuid4().hex[:6]}"
        per_artifact = -(-versions // 3)  # at least `versions` in all
        stream = [
            (k, v, campaign)
            for k, v in campaign_stream(campaign, per_artifact)
            if k in {"artifact", "lifecycle"}
        ]
        waiter = asyncio.create_task(
            wait_revisions(kafka, child.topics["snapshot"], {campaign: len(stream)}, 900)
        )
        started = await produce(kafka, child, stream)
        loaded = await waiter - started
        stored = sum(1 for k, _, _ in stream if k == "artifact")
        async with httpx.AsyncClient(base_url=child.url) as client:
            for _ in range(20):  # warm the connection and the server's cache
                (await client.get(f"/campaigns/{campaign}/snapshot")).raise_for_status()
            timings = []
            for _ in range(reads):
                t = time.perf_counter()
                answer = await client.get(f"/campaigns/{campaign}/snapshot")
                timings.append((time.perf_counter() - t) * 1000)
                answer.raise_for_status()
            body = answer.json()
        timings.sort()
        p99 = timings[min(len(timings) - 1, int(len(timings) * 0.99))]
        print(
            f"snapshot read: campaign with {body['counts']['versions']:,} versions "
            f"(loaded in {loaded:.1f}s), {reads} reads over HTTP: "
            f"median {statistics.median(timings):.2f} ms, p99 {p99:.2f} ms, "
            f"max {timings[-1]:.2f} ms"
        )
        assert body["counts"]["versions"] == stored
    finally:
        child.stop()


async def run(args: argparse.Namespace) -> None:
    with servers() as (kafka, mongo):
        print(f"servers: kafka {kafka}, mongodb {mongo.split('@')[-1]}", flush=True)
        await throughput(kafka, mongo, args.campaigns, args.versions)
        await snapshot_reads(kafka, mongo, args.snapshot_versions, args.reads)


def main() -> None:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--campaigns", type=int, default=20)
    parser.add_argument("--versions", type=int, default=40, help="per artifact, throughput run")
    parser.add_argument("--snapshot-versions", type=int, default=10_000)
    parser.add_argument("--reads", type=int, default=500)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
