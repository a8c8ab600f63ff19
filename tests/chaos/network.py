"""The network between the service and its servers, made slow or broken on purpose.

- `NetworkRig`: Toxiproxy in front of a Kafka broker of its own and of the MongoDB-compatible
  server. The broker has two listeners: PLAINTEXT, advertised as itself (the test's load and
  its checks use it, so they see the truth whatever the fault), and PROXIED, advertised as the
  proxy's address, so a client that bootstraps through the proxy (the service) keeps talking
  through it for every fetch, produce and commit. MongoDB is reached by the service only
  through the proxy (`directConnection=true`: the server's own host list is not followed).
- `CommitCutter`: a relay that reads the MongoDB wire protocol and resets the connection
  exactly at a `commitTransaction`: before the server sees it, or after the server applied it
  and before its answer gets back (the client cannot know whether it committed). Toxiproxy
  cannot aim at one command; this can, so the "reset during a commit" scenario really hits
  commits. It sits behind a proxy of its own in Toxiproxy.
- `Monitor`: what is observable from outside while a fault runs (snapshot topic end, lag,
  /readyz and /healthz, the process), sampled twice a second.
- `Hostile`: records that must be dead-lettered whatever the network does.
- `ScenarioResult`: one row of the figures table.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import orjson
from aiokafka import AIOKafkaProducer
from pymongo.uri_parser import parse_uri

from dev.servers.common import free_ports
from dev.servers.kafka import KafkaListener, KafkaServer
from dev.toxiproxy import Toxiproxy, ToxiproxyServer
from tests.chaos.cluster import ConfiguredDeployment
from tests.chaos.processes import (
    SOURCES,
    Deployment,
    KafkaProbe,
    Outgoing,
    ServiceProcess,
    iso,
    read_topic,
)
from tests.servers import start_local

LOCAL = "127.0.0.1"
KAFKA_PROXY = "kafka"
MONGO_PROXY = "mongo"
MONGO_CUT_PROXY = "mongo_cut"  # the commit cutter behind it


# =========================================================================== commit cutter

OP_MSG = 2013
CutMode = Literal["before", "after"]


def _command_name(message: bytes) -> str | None:
    """The command of an OP_MSG (the first key of its body section), else None."""
    if len(message) < 27 or struct.unpack_from("<i", message, 12)[0] != OP_MSG:
        return None
    if message[20] != 0:  # section kind 0 (the body) comes first from every driver
        return None
    end = message.find(b"\0", 26)
    return message[26:end].decode("ascii", "replace") if end > 0 else None


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (linger 0), as a dropped connection looks to the peer."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class CommitCutter:
    """A TCP relay to MongoDB that resets the connection of an armed `commitTransaction`."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.cuts: Counter[CutMode] = Counter()
        self.commits_seen = 0
        self._armed: CutMode | None = None
        self._cut = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, LOCAL, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()

    async def cut_next(self, mode: CutMode, timeout: float) -> bool:
        """Arm a cut of the next commit; True once it happened, False after `timeout`."""
        self._cut.clear()
        self._armed = mode
        try:
            await asyncio.wait_for(self._cut.wait(), timeout)
        except TimeoutError:
            return False
        finally:
            self._armed = None
        return True

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            _reset(client_w)
            return
        awaited: set[int] = set()  # request ids whose answer is to be cut

        def cut(mode: CutMode) -> None:
            self.cuts[mode] += 1
            self._cut.set()
            _reset(client_w)
            _reset(server_w)

        async def upstream() -> None:
            while message := await _read_message(client_r):
                if _command_name(message) == "commitTransaction":
                    self.commits_seen += 1
                    mode, self._armed = self._armed, None
                    if mode == "before":
                        cut(mode)
                        return
                    if mode == "after":
                        awaited.add(struct.unpack_from("<i", message, 4)[0])
                server_w.write(message)
                await server_w.drain()

        async def downstream() -> None:
            while message := await _read_message(server_r):
                if struct.unpack_from("<i", message, 8)[0] in awaited:
                    cut("after")  # the server committed; the client never hears it
                    return
                client_w.write(message)
                await client_w.drain()

        pumps = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
                self._tasks.discard(pump)
            for writer in (client_w, server_w):
                writer.transport.abort()


async def _read_message(reader: asyncio.StreamReader) -> bytes | None:
    try:
        header = await reader.readexactly(16)
        (length,) = struct.unpack_from("<i", header, 0)
        return header + await reader.readexactly(length - 16)
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        return None


# =========================================================================== the rig


@dataclass
class NetworkRig:
    """Toxiproxy, a broker of its own behind it, and the MongoDB server behind it."""

    toxiproxy: ToxiproxyServer
    api: Toxiproxy
    kafka: KafkaServer
    kafka_proxied: str  # what the service bootstraps from
    mongo_direct_uri: str
    mongo_proxied_uri: str
    mongo_cut_uri: str
    cutter: CommitCutter

    @property
    def kafka_direct(self) -> str:
        return self.kafka.bootstrap_servers

    def deployment(
        self, label: str, settings: Mapping[str, str] | None = None, *, cut_commits: bool = False
    ) -> ConfiguredDeployment:
        """Topics and a database of their own; the service's addresses are the proxies'."""
        through = {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_proxied,
            "MONGODB_URI": self.mongo_cut_uri if cut_commits else self.mongo_proxied_uri,
            **(settings or {}),
        }
        return ConfiguredDeployment.with_settings(
            self.kafka_direct, self.mongo_direct_uri, label, through
        )

    async def heal(self) -> None:
        for proxy in (KAFKA_PROXY, MONGO_PROXY, MONGO_CUT_PROXY):
            await self.api.clear(proxy)


@contextlib.asynccontextmanager
async def network_rig(work_dir: Path, mongo_uri: str) -> AsyncIterator[NetworkRig]:
    """Start Toxiproxy and the proxied broker; proxies for Kafka and MongoDB (and the cutter)."""
    mongo_host, mongo_port = parse_uri(mongo_uri)["nodelist"][0]
    api_port, kafka_proxy_port, mongo_proxy_port, cut_proxy_port = free_ports(4)
    toxiproxy = await asyncio.to_thread(
        start_local, lambda: ToxiproxyServer(work_dir / "toxiproxy", port=api_port)
    )

    def make_kafka() -> KafkaServer:
        port, controller, proxied = free_ports(3)
        return KafkaServer(
            work_dir / f"kafka-{uuid.uuid4().hex[:6]}",
            port=port,
            controller_port=controller,
            extra_listeners=[KafkaListener("PROXIED", proxied)],
            # The PROXIED listener tells its clients to come back through the proxy.
            server_properties={
                "advertised.listeners": (
                    f"PLAINTEXT://{LOCAL}:{port},PROXIED://{LOCAL}:{kafka_proxy_port}"
                ),
            },
            heap_max="768m",
            die_with_parent=True,
        )

    kafka = await asyncio.to_thread(start_local, make_kafka)
    api = Toxiproxy(toxiproxy.api_url)
    cutter = CommitCutter(mongo_host, mongo_port)
    try:
        proxied_port = kafka.extra_listeners[0].port
        await api.create_proxy(
            KAFKA_PROXY, f"{LOCAL}:{kafka_proxy_port}", f"{LOCAL}:{proxied_port}"
        )
        await api.create_proxy(
            MONGO_PROXY, f"{LOCAL}:{mongo_proxy_port}", f"{mongo_host}:{mongo_port}"
        )
        await cutter.start()
        await api.create_proxy(
            MONGO_CUT_PROXY, f"{LOCAL}:{cut_proxy_port}", f"{LOCAL}:{cutter.port}"
        )
        yield NetworkRig(
            toxiproxy=toxiproxy,
            api=api,
            kafka=kafka,
            kafka_proxied=f"{LOCAL}:{kafka_proxy_port}",
            mongo_direct_uri=mongo_uri,
            mongo_proxied_uri=f"mongodb://{LOCAL}:{mongo_proxy_port}/?directConnection=true",
            mongo_cut_uri=f"mongodb://{LOCAL}:{cut_proxy_port}/?directConnection=true",
            cutter=cutter,
        )
    finally:
        await cutter.close()
        await api.close()
        await asyncio.to_thread(kafka.stop)
        await asyncio.to_thread(toxiproxy.stop)


# =========================================================================== observation


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic()
    snapshots: int | None  # records on the snapshot topic
    lag: int | None
    readyz: int | None
    readyz_seconds: float
    healthz: int | None
    alive: bool


class Monitor:
    """Samples the deployment and the service twice a second, from outside (direct)."""

    def __init__(self, deployment: Deployment, service: ServiceProcess, every: float = 0.5):
        self.deployment = deployment
        self.service = service
        self.every = every
        self.samples: list[Sample] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Monitor:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        probe = KafkaProbe(self.deployment)
        try:
            async with httpx.AsyncClient(base_url=self.service.base_url, timeout=10.0) as http:
                while True:
                    began = time.monotonic()
                    lag, snapshots = await probe.lag(), await probe.snapshot_end()
                    ready_status, ready_took = await _status(http, "/readyz")
                    health_status, _ = await _status(http, "/healthz")
                    self.samples.append(
                        Sample(
                            began,
                            snapshots,
                            lag,
                            ready_status,
                            ready_took,
                            health_status,
                            self.service.alive,
                        )
                    )
                    await asyncio.sleep(max(0.0, self.every - (time.monotonic() - began)))
        finally:
            await probe.close()

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.at <= end]

    def recovery(self, fault_end: float) -> float | None:
        """Seconds from the fault's end to the first snapshot published after it."""
        before = [s.snapshots for s in self.samples if s.at <= fault_end and s.snapshots]
        baseline = before[-1] if before else 0
        for sample in self.samples:
            if sample.at > fault_end and (sample.snapshots or 0) > baseline:
                return sample.at - fault_end
        return None

    def effect(self, fault_start: float, fault_end: float) -> str:
        """How the fault showed from outside: the snapshot rate before and during it, and the
        highest lag during it and until caught up (evidence that it bit)."""

        def rate(samples: list[Sample]) -> float | None:
            known = [s for s in samples if s.snapshots is not None]
            if len(known) < 2 or known[-1].at <= known[0].at:
                return None
            published = (known[-1].snapshots or 0) - (known[0].snapshots or 0)
            return published / (known[-1].at - known[0].at)

        before = rate([s for s in self.samples if s.at < fault_start])
        during = rate(self.between(fault_start, fault_end))
        peak = max((s.lag or 0 for s in self.samples if s.at >= fault_start), default=0)

        def shown(value: float | None) -> str:
            return "?" if value is None else f"{value:.0f}"

        return f"snapshots/s {shown(before)} before, {shown(during)} during; peak lag {peak}"

    def caught_up(self, fault_start: float, fault_end: float) -> float | None:
        """Seconds from the fault's end until the lag is back to what it was in the 30 s
        before it (or to 50 records, if that is more)."""
        steady = [
            s.lag
            for s in self.samples
            if fault_start - 30 <= s.at < fault_start and s.lag is not None
        ]
        normal = max(max(steady, default=0), 50)
        for sample in self.samples:
            if sample.at > fault_end and sample.lag is not None and sample.lag <= normal:
                return sample.at - fault_end
        return None


async def _status(http: httpx.AsyncClient, path: str) -> tuple[int | None, float]:
    began = time.monotonic()
    try:
        status: int | None = (await http.get(path)).status_code
    except httpx.HTTPError:
        status = None
    return status, time.monotonic() - began


# =========================================================================== hostile records


@dataclass(frozen=True)
class HostileRecord:
    topic: str
    partition: int
    offset: int
    reason: str


class Hostile:
    """A few records every network fault must leave dead-lettered exactly as refused."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.campaign = f"hostile-{uuid.uuid4().hex[:6]}"
        self.sent: list[HostileRecord] = []
        self._n = 0

    def _values(self) -> list[tuple[str, bytes, str]]:
        self._n += 1
        envelope: dict[str, Any] = {
            "specversion": "1.0",
            "id": f"{self.campaign}-h{self._n}",
            "source": SOURCES["artifact"],
            "time": iso(datetime.now(UTC)),
            "datacontenttype": "application/json",
        }
        unknown = {
            **envelope,
            "type": "campaign.artifact.teleported",
            "data": {"campaign_id": self.campaign},
        }
        invalid = {
            **envelope,
            "id": f"{self.campaign}-h{self._n}-b",
            "type": "campaign.artifact.generated",
            "data": {"campaign_id": self.campaign, "artifact_id": "a"},  # no type, no content
        }
        return [
            # (not on the artifact topic: the accounting reads it for the versions' order)
            ("feedback", b"{not json", "not_json"),
            ("lifecycle", orjson.dumps({"hello": "world"}), "not_cloudevent"),
            ("audit", orjson.dumps(unknown), "unknown_type"),
            ("lifecycle", orjson.dumps(invalid), "invalid_data"),
        ]

    async def send(self, count: int = 4) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.deployment.kafka, acks="all")
        await producer.start()
        try:
            for kind, value, reason in self._values()[:count]:
                meta = await producer.send_and_wait(
                    self.deployment.topic(kind), value, key=self.campaign.encode()
                )
                self.sent.append(HostileRecord(meta.topic, meta.partition, meta.offset, reason))
        finally:
            await producer.stop()


@dataclass
class DeadLetters:
    """The dead-letter topic against the hostile records sent."""

    refused_as_expected: int = 0
    caused: list[str] = field(default_factory=list)  # valid events dead-lettered: the fault's
    missing: list[str] = field(default_factory=list)  # hostile records never dead-lettered
    wrong_reason: list[str] = field(default_factory=list)
    repeated: int = 0  # the same refused record published again (at least once)


async def dead_letters(deployment: Deployment, hostile: Sequence[HostileRecord]) -> DeadLetters:
    expected = {(h.topic, h.partition, h.offset): h.reason for h in hostile}
    seen: Counter[tuple[str, int, int]] = Counter()
    result = DeadLetters()
    for record in await read_topic(deployment, "dead_letter"):
        data = record.value["data"]
        where = (data["topic"], data["partition"], data["offset"])
        seen[where] += 1
        if seen[where] > 1:
            result.repeated += 1
            continue
        if where not in expected:
            result.caused.append(f"{data['reason']} at {where}: {data['detail'][:160]}")
        elif data["reason"] != expected[where]:
            result.wrong_reason.append(f"{where}: {data['reason']} != {expected[where]}")
        else:
            result.refused_as_expected += 1
    result.missing = [
        f"{where} ({reason})" for where, reason in expected.items() if not seen[where]
    ]
    return result


# =========================================================================== large campaigns


def large_campaigns(
    campaigns: int, artifacts: int, follow_up: int, seed: int
) -> tuple[list[Outgoing], list[Outgoing]]:
    """Campaigns of `artifacts` artifacts each (large snapshots). First: created and a first
    version of every artifact; then `follow_up` events per campaign among audits, feedback,
    approvals and new versions, interleaved across campaigns."""
    rng = random.Random(seed)
    prefix = f"big{uuid.uuid4().hex[:5]}"
    counter = 0
    start = datetime.now(UTC)

    def event(kind: str, type_: str, data: dict[str, Any]) -> Outgoing:
        nonlocal counter
        counter += 1
        return Outgoing(
            kind,
            {
                "specversion": "1.0",
                "id": f"{prefix}-e{counter:07d}",
                "source": SOURCES[kind],
                "type": type_,
                "time": iso(start),
                "datacontenttype": "application/json",
                "data": data,
            },
        )

    out: list[Outgoing] = []
    latest: dict[tuple[str, int], int] = {}
    names = [f"{prefix}-{n:02d}" for n in range(campaigns)]
    for c in names:
        out.append(event("lifecycle", "campaign.created", {"campaign_id": c, "name": c}))
    for a in range(artifacts):
        for c in names:
            latest[(c, a)] = 1
            out.append(_generated(event, c, a, 1, None))
    first, out = out, []
    for _ in range(follow_up * campaigns):
        c, a = rng.choice(names), rng.randrange(artifacts)
        n = latest[(c, a)]
        version = f"{c}.a{a:03d}.v{n}"
        roll = rng.random()
        if roll < 0.4:
            data = {
                "campaign_id": c,
                "version_id": version,
                "outcome": rng.choice(["pass", "fail"]),
            }
            out.append(event("audit", "campaign.audit.completed", data))
        elif roll < 0.6:
            data = {
                "campaign_id": c,
                "artifact_id": f"{c}.a{a:03d}",
                "version_id": version,
                "feedback_text": "shorter",
            }
            out.append(event("feedback", "campaign.feedback.submitted", data))
        elif roll < 0.7:
            out.append(
                event(
                    "lifecycle",
                    "campaign.version.approved",
                    {"campaign_id": c, "version_id": version},
                )
            )
        else:
            latest[(c, a)] = n + 1
            out.append(_generated(event, c, a, n + 1, version))
    return first, out


def _generated(event: Any, campaign: str, artifact: int, n: int, parent: str | None) -> Outgoing:
    data: dict[str, Any] = {
        "campaign_id": campaign,
        "artifact_id": f"{campaign}.a{artifact:03d}",
        "artifact_type": ("copy", "short_copy", "visual_concept")[artifact % 3],
        "version_id": f"{campaign}.a{artifact:03d}.v{n}",
        "content": {"headline": f"take {n}", "body": "y" * 80},
    }
    if parent:
        data["parent_version_id"] = parent
    result: Outgoing = event("artifact", "campaign.artifact.generated", data)
    return result


# =========================================================================== the figures


@dataclass
class ScenarioResult:
    scenario: str
    fault_seconds: float
    events: int
    recovery: float | None
    caught_up: float | None
    lost: int
    duplicated: int
    dead_letters_caused: int
    restarts: int
    notes: str = ""

    HEADER = (
        "| scenario | fault | events | recovery (first new snapshot) | lag back to normal "
        "| lost | duplicated | dead letters caused | restarts | notes |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )

    def row(self) -> str:
        def seconds(value: float | None) -> str:
            return "never" if value is None else f"{value:.1f} s"

        return (
            f"| {self.scenario} | {self.fault_seconds:.0f} s | {self.events} "
            f"| {seconds(self.recovery)} | {seconds(self.caught_up)} | {self.lost} "
            f"| {self.duplicated} | {self.dead_letters_caused} | {self.restarts} | {self.notes} |"
        )

    def as_json(self) -> bytes:
        return orjson.dumps(self.__dict__)
