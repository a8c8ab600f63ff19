"""Three brokers: the node leading the most input partitions is SIGKILLed under load.

A three-node KRaft cluster from the same jars (`KafkaCluster` of dev/servers/kafka_cluster.py:
each node broker and controller, default replication factor 3, min.insync.replicas 2). The service
(`campaign-ledger serve`, a real process) creates its six topics with
`KAFKA_TOPIC_REPLICATION_FACTOR=3`. A mixed stream of thousands of events is sent evenly;
about a third of the way in, the node leading the most input partitions is SIGKILLed; the
stream goes on against the two others; the node is started again. Afterwards, judged from
outside as in test_never_lose.py: 0 lost, 0 duplicated, 0 orphans, 0 revision holes, and the
service process never restarted.

The pause at the leader change is measured from the snapshot topic: the longest time without
a publication that begins during the outage (the service publishes one per event, dozens a
second here). The same gap on the input topics, where the test's producer stamps its records,
tells how much of it was the producer waiting for the new leaders too.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from dev.servers.kafka_cluster import KafkaCluster
from tests.chaos.cluster import (
    ClusterSender,
    ConfiguredDeployment,
    longest_gap,
    partition_leaders,
    publication_times,
    topic_layout,
)
from tests.chaos.processes import INPUT_KINDS, MixedStream, ServiceProcess
from tests.chaos.test_never_lose import assert_clean, settle, verify
from tests.servers import start_local

pytestmark = pytest.mark.slow

DURATION = 40.0  # seconds of sending
OUTAGE = 15.0  # seconds the killed node stays down while the stream goes on


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    made = start_local(
        lambda: KafkaCluster(
            tmp_path_factory.mktemp("kafka-cluster"), heap_max="512m", die_with_parent=True
        )
    )
    try:
        yield made
    finally:
        made.stop(timeout=10)


async def wait_in_sync(bootstrap: str, topics: list[str], replicas: int, timeout: float) -> float:
    """Seconds until every partition of ``topics`` has ``replicas`` in-sync replicas again."""
    started = time.monotonic()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        while True:
            described = await admin.describe_topics(topics)
            short = [
                (t["topic"], p["partition"], p["isr"])
                for t in described
                for p in t["partitions"]
                if len(p["isr"]) < replicas
            ]
            if not short:
                return time.monotonic() - started
            assert time.monotonic() - started < timeout, f"not back in sync: {short[:5]}"
            await asyncio.sleep(0.5)
    finally:
        await admin.close()


async def test_leader_killed_under_load(
    cluster: KafkaCluster, mongodb_uri: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="aiokafka")  # a node is away on purpose
    began = time.monotonic()
    deployment = ConfiguredDeployment.with_settings(
        cluster.bootstrap_servers, mongodb_uri, "3b", {"KAFKA_TOPIC_REPLICATION_FACTOR": "3"}
    )
    service = ServiceProcess(deployment, tmp_path, "ledger")
    sender = ClusterSender(deployment)
    passed = False
    try:
        await service.start()  # creates the six topics
        admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers)
        await admin.start()
        try:
            layout = await topic_layout(admin, deployment.topics.values())
        finally:
            await admin.close()
        for name, found in layout.items():
            assert (found.partitions, found.replication_factors) == (deployment.partitions, {3})
            assert found.configs["min.insync.replicas"] == "2", name
        assert layout[deployment.topic("snapshot")].configs["cleanup.policy"] == "compact"

        stream = MixedStream(campaigns=40, versions=5, span=DURATION)
        timeline: dict[str, float] = {}
        victim: list[int] = []

        async def outage(started: float) -> None:
            await asyncio.sleep(started + 0.3 * DURATION - time.monotonic())
            leaders = await partition_leaders(cluster.bootstrap_servers, deployment.input_topics)
            node, led = Counter(leaders.values()).most_common(1)[0]
            victim[:] = [node, led]
            timeline["kill"] = time.time()
            await cluster.akill(node)
            await asyncio.sleep(OUTAGE)  # the stream goes on against two nodes
            timeline["restart"] = time.time()
            await cluster.astart_node(node)
            timeline["back"] = time.time()

        chaos = asyncio.create_task(outage(time.monotonic()))
        try:
            await sender.send_all(stream.events, duration=DURATION)
            await chaos
        finally:
            chaos.cancel()
            await sender.close()
        settled = await settle(deployment, [service])
        in_sync = await wait_in_sync(
            cluster.bootstrap_servers, list(deployment.topics.values()), 3, timeout=60
        )
        found = await verify(deployment, sender.sent, service, strict_order=False)

        published = await publication_times(deployment, "snapshot")
        inputs: list[float] = []
        for kind in INPUT_KINDS:
            inputs += await publication_times(deployment, kind)
        inputs.sort()
        pause, pause_at = longest_gap(published, timeline["kill"], timeline["restart"])
        input_pause, input_pause_at = longest_gap(inputs, timeline["kill"], timeline["restart"])
        # How long after the input flowed again the service published again: its own share.
        lag_behind = (pause_at + pause) - (input_pause_at + input_pause)
        before = [b - a for a, b in itertools.pairwise(published) if b < timeline["kill"]]
        partitions = len(deployment.input_topics) * deployment.partitions
        print(
            f"\nthree brokers: events sent {len(sender.sent)} ({stream.distinct} distinct), "
            f"node {victim[0]} (leader of {victim[1]} of {partitions} input partitions) SIGKILLed "
            f"for {timeline['restart'] - timeline['kill']:.0f}s, "
            f"back in {timeline['back'] - timeline['restart']:.0f}s, replicas in sync "
            f"{in_sync:.0f}s after the stream; consumption paused {pause:.1f}s (starting "
            f"{pause_at - timeline['kill']:+.1f}s after the kill; longest gap before it "
            f"{max(before, default=0):.1f}s), the producer's own pause {input_pause:.1f}s "
            f"(the service published again {lag_behind:+.1f}s after the input resumed); "
            f"lost {found.lost}, duplicated {found.duplicated}, orphaned {found.orphaned}, "
            f"wrong {found.wrong}, republished revisions {found.republished}, producer "
            f"retries {sender.retries}, service starts {service.starts}, settled in "
            f"{settled:.0f}s, run time {time.monotonic() - began:.0f}s, seed {stream.seed}"
        )
        assert stream.distinct >= 2000 and len(sender.sent) >= len(stream)
        assert_clean(found, f"node {victim[0]} killed under load (seed {stream.seed})")
        assert service.alive and service.starts == 1, "the service had to be restarted"
        passed = True
    finally:
        await service.stop_now()
        if not passed:
            print(f"\n----- service log ({service.log_file}) -----\n{service.log_tail(80)}")
        await deployment.drop()
