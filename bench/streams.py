"""`make bench` (streams): 1,000 SSE clients, 50 campaigns, the ledger applying 100 events/s.

One `campaign-ledger serve` process does everything (consumes, stores, publishes, follows the
snapshot topic, serves the streams). The bench:

- creates the campaigns, opens the streams (20 per campaign) with a minimal HTTP/1.1 client
  (cheap enough that 1,000 of them in one process measure the service, not the client);
- sends artifact versions at 100 events/s, each one a new revision of its campaign;
- reads the snapshot topic itself: each revision's record timestamp is its publication time;
- prints p50/p99/max from publication to arrival at a client, the revisions a client did not
  receive against the skips the service counted (skip-to-latest when a client lags), whether
  every client reached its campaign's last revision, and the service's RSS before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import statistics
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.__main__ import Child, event, servers


@dataclass
class Client:
    campaign: str
    received: dict[int, float] = field(default_factory=dict)  # revision -> arrival (epoch s)
    first: int | None = None
    error: str | None = None


async def follow(host: str, port: int, client: Client, ready: asyncio.Event) -> None:
    """GET the campaign's stream and record each message's revision and arrival time."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as error:
        client.error = str(error)
        ready.set()
        return
    try:
        writer.write(
            f"GET /campaigns/{client.campaign}/stream HTTP/1.1\r\nHost: {host}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        status = await reader.readline()
        if b" 200 " not in status:
            client.error = status.decode(errors="replace").strip()
            return
        while (await reader.readline()) not in (b"\r\n", b""):
            pass  # headers; the body is chunked: each chunk is whole messages
        ready.set()
        while True:
            size_line = await reader.readline()
            if not size_line:
                return
            size = int(size_line.strip() or b"0", 16)
            if size == 0:
                return
            chunk = await reader.readexactly(size + 2)
            arrived = time.time()
            for match in re.finditer(rb"^id: (\d+)$", chunk, re.MULTILINE):
                revision = int(match.group(1))
                client.received.setdefault(revision, arrived)
                if client.first is None:
                    client.first = revision
    except (OSError, asyncio.IncompleteReadError) as error:
        client.error = client.error or str(error)
    finally:
        ready.set()
        writer.close()


async def publications(
    kafka: str, topic: str, out: dict[tuple[str, int], float], stop: asyncio.Event
) -> None:
    """(campaign, revision) -> publication time, from the snapshot topic's record timestamps."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = None
        while not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        await consumer.seek_to_beginning()
        while not stop.is_set():
            for records in (await consumer.getmany(timeout_ms=100)).values():
                for record in records:
                    data = orjson.loads(record.value)["data"]
                    key = (data["campaign_id"], data["revision"])
                    out.setdefault(key, record.timestamp / 1000)
    finally:
        await consumer.stop()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def service_metrics(url: str) -> tuple[float, str]:
    """Skips the service counted, and how long its feed took to see each publication."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{url}/metrics")).text

    def value(pattern: str) -> float:
        found = re.search(rf"^{re.escape(pattern)} (\S+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    count = value("ledger_feed_delay_seconds_count") or 1.0
    within = []
    for le in ("0.1", "0.25", "1.0"):
        bucket = value('ledger_feed_delay_seconds_bucket{le="' + le + '"}')
        within.append(f"<= {le} s: {bucket / count:.0%}")
    mean = value("ledger_feed_delay_seconds_sum") / count * 1000
    feed = f"publication -> the service's feed: mean {mean:.0f} ms, " + ", ".join(within)
    return value("ledger_stream_skipped_total"), feed


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process used so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))]


async def create(
    producer: AIOKafkaProducer,
    child: Child,
    campaigns: list[str],
    published: dict[tuple[str, int], float],
) -> None:
    for campaign in campaigns:
        await producer.send(
            child.topics["lifecycle"],
            event("campaign.created", {"campaign_id": campaign, "name": campaign}),
            key=campaign.encode(),
        )
    await producer.flush()
    deadline = time.monotonic() + 120
    while not all((c, 1) in published for c in campaigns):
        if time.monotonic() > deadline:
            raise SystemExit("the campaigns were not created within 120 s")
        await asyncio.sleep(0.2)


async def send_load(
    producer: AIOKafkaProducer, child: Child, campaigns: list[str], rate: int, seconds: int
) -> int:
    """`rate` events/s spread over the campaigns, each a new version (a new revision)."""
    total = rate * seconds
    started = time.monotonic()
    for n in range(total):
        campaign = campaigns[n % len(campaigns)]
        artifact = f"{campaign}.copy"
        await producer.send(
            child.topics["artifact"],
            event(
                "campaign.artifact.generated",
                {
                    "campaign_id": campaign,
                    "artifact_id": artifact,
                    "artifact_type": "copy",
                    "version_id": f"{artifact}.v{n}",
                    "content": {"headline": f"take {n}", "body": "lorem ipsum " * 10},
                },
            ),
            key=campaign.encode(),
        )
        pause = started + (n + 1) / rate - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
    await producer.flush()
    return total


class RoleChild(Child):
    """`campaign-ledger serve --role <role>`, sharing another child's topics and database."""

    def __init__(self, kafka: str, mongo: str, role: str, like: Child) -> None:
        super().__init__(kafka, mongo)
        self.role = role
        self.topics = like.topics
        self.env = {**like.env, "HTTP_PORT": str(self.port)}
        self.serve_args = ["--role", role]


async def stamped_by_the_broker(kafka: str, topic: str) -> None:
    """The snapshot topic, made before the service starts, with LogAppendTime: a record's
    timestamp is then the moment the broker appended it, i.e. when it was published (not when
    the service's producer queued it)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, 6, 1, topic_configs={"message.timestamp.type": "LogAppendTime"})]
        )
    finally:
        await admin.close()


async def bench(args: argparse.Namespace) -> None:
    with servers() as (kafka, mongo):
        child = Child(kafka, mongo)
        child.env["STREAM_MAX_CLIENTS"] = str(args.clients + 100)
        await stamped_by_the_broker(kafka, child.topics["snapshot"])
        children = [child]
        if args.split:
            # a consumer process and an API process: the streams' event loop never runs a batch
            children = [RoleChild(kafka, mongo, "consumer", child)]
            children.append(RoleChild(kafka, mongo, "api", child))
        try:
            for each in children:
                await each.start()
            await measure(args, kafka, children[-1])
        finally:
            for each in children:
                each.stop()


async def measure(args: argparse.Namespace, kafka: str, child: Child) -> None:
    assert child.process is not None
    pid = child.process.pid
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", linger_ms=2)
    await producer.start()
    published: dict[tuple[str, int], float] = {}
    stop = asyncio.Event()
    watcher = asyncio.create_task(publications(kafka, child.topics["snapshot"], published, stop))
    campaigns = [f"live-{uuid.uuid4().hex[:6]}-{n}" for n in range(args.campaigns)]
    tasks: list[asyncio.Task[None]] = []
    try:
        await create(producer, child, campaigns, published)
        rss_before = rss_mib(pid)

        clients = [Client(campaigns[n % len(campaigns)]) for n in range(args.clients)]
        readies = [asyncio.Event() for _ in clients]
        host, port = "127.0.0.1", child.port
        for client, ready in zip(clients, readies, strict=True):
            tasks.append(asyncio.create_task(follow(host, port, client, ready)))
            if len(tasks) % 50 == 0:
                await asyncio.sleep(0.05)  # a ramp, not a thundering herd on accept()
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 120)
        failed = [c.error for c in clients if c.error]
        if failed:
            raise SystemExit(f"{len(failed)} streams failed to open, e.g. {failed[0]}")
        rss_connected = rss_mib(pid)
        print(
            f"streams: {len(clients)} clients on {len(campaigns)} campaigns open; "
            f"sending {args.rate} events/s for {args.seconds} s …",
            flush=True,
        )

        started, cpu_started = time.monotonic(), cpu_seconds(pid)
        client_started = cpu_seconds(os.getpid())
        total = await send_load(producer, child, campaigns, args.rate, args.seconds)
        sent_in = time.monotonic() - started
        cpu = (cpu_seconds(pid) - cpu_started) / sent_in
        client_cpu = (cpu_seconds(os.getpid()) - client_started) / sent_in
        last = {
            c: 1 + total // len(campaigns) + (i < total % len(campaigns))
            for i, c in enumerate(campaigns)
        }
        deadline = time.monotonic() + 120
        while not all(c.received and max(c.received) >= last[c.campaign] for c in clients):
            if time.monotonic() > deadline or all(t.done() for t in tasks):
                break
            await asyncio.sleep(0.25)
        await asyncio.sleep(0.5)
        rss_after = rss_mib(pid)
        skips, feed = await service_metrics(child.url)
    finally:
        for task in tasks:
            task.cancel()
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await producer.stop()

    print(f"  {feed}")
    report(
        clients=clients,
        campaigns=campaigns,
        published=published,
        last=last,
        skips=skips,
        total=total,
        sent_in=sent_in,
    )
    print(
        f"  service RSS: {rss_before:.0f} MiB before the clients, {rss_connected:.0f} MiB "
        f"with {len(clients)} connected, {rss_after:.0f} MiB after the load; service CPU "
        f"{cpu:.0%} of one core during the load, this client process {client_cpu:.0%} "
        f"(machine load average {os.getloadavg()[0]:.1f})"
    )


def report(
    *,
    clients: list[Client],
    campaigns: list[str],
    published: dict[tuple[str, int], float],
    last: dict[str, int],
    skips: float,
    total: int,
    sent_in: float,
) -> None:
    latencies: list[float] = []
    missing = 0
    by_campaign: dict[str, list[int]] = defaultdict(list)
    for (campaign, revision), _ in published.items():
        by_campaign[campaign].append(revision)
    reached_last = 0
    for client in clients:
        first = client.first or 0
        for revision in by_campaign[client.campaign]:
            if revision <= first:
                continue
            arrived = client.received.get(revision)
            if arrived is None:
                missing += 1
            else:
                latencies.append((arrived - published[(client.campaign, revision)]) * 1000)
        if client.received and max(client.received) >= last[client.campaign]:
            reached_last += 1
    latencies.sort()
    lost = max(0, missing - int(skips))
    print(
        f"streams: {total} events in {sent_in:.1f} s ({total / sent_in:.0f}/s); "
        f"{len(latencies):,} messages delivered to {len(clients)} clients"
    )
    if latencies:
        print(
            f"  publication -> arrival: p50 {statistics.median(latencies):.0f} ms, "
            f"p99 {pct(latencies, 0.99):.0f} ms, max {latencies[-1]:.0f} ms"
        )
    print(
        f"  not delivered: {missing} revisions, of which {int(skips)} intended skips counted "
        f"by the service (skip-to-latest) -> lost: {lost}; clients that reached their "
        f"campaign's last revision: {reached_last}/{len(clients)}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.streams")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--campaigns", type=int, default=50)
    parser.add_argument("--rate", type=int, default=100, help="events per second")
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument(
        "--split", action="store_true", help="one --role consumer and one --role api process"
    )
    # uvloop here too: 1,000 clients in one process must not be what the figures measure
    uvloop.run(bench(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
