"""What the three-broker and locked-down-topic tests add to the chaos suite's tools.

- `ConfiguredDeployment`: a `Deployment` whose service instances get more settings
  (replication factor, credentials, `KAFKA_CREATE_TOPICS`...).
- `ClusterSender`: the chaos `Sender`, waiting for *any* node to listen after a failure (the
  stock one waits for the first bootstrap address, which may be the node that was killed).
- `partition_leaders`, `topic_layout`, `publication_times`: what the cluster says about
  the deployment's topics, read from outside the service.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.chaos.processes import Deployment, Sender


@dataclass(frozen=True)
class ConfiguredDeployment(Deployment):
    """A `Deployment` whose instances also get `settings` (environment variables)."""

    settings: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def with_settings(
        cls, kafka: str, mongo_uri: str, label: str, settings: Mapping[str, str]
    ) -> ConfiguredDeployment:
        return dataclasses.replace(cls.isolated(kafka, mongo_uri, label), settings=dict(settings))

    def environment(self, http_port: int) -> dict[str, str]:
        return {**super().environment(http_port), **self.settings}


class ClusterSender(Sender):
    async def _broker_listening(self, timeout: float = 120.0) -> None:
        """Wait, without spinning, until some node of the cluster accepts connections."""
        addresses = [a.strip().rpartition(":") for a in self.deployment.kafka.split(",")]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for host, _, port in addresses:
                try:
                    _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 1)
                except (OSError, TimeoutError):
                    continue
                writer.close()
                await writer.wait_closed()
                await asyncio.sleep(0.3)
                return
            await asyncio.sleep(0.3)


@dataclass(frozen=True)
class TopicLayout:
    partitions: int
    replication_factors: set[int]
    configs: dict[str, str]


async def topic_layout(admin: AIOKafkaAdminClient, topics: Iterable[str]) -> dict[str, TopicLayout]:
    """Partition count, replication factors and (non-default and default) configs per topic."""
    names = list(topics)
    described = {t["topic"]: t for t in await admin.describe_topics(names)}
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    )
    configs: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            configs[resource["resource_name"]] = {
                entry["config_names"]: entry["config_value"] for entry in resource["config_entries"]
            }
    return {
        name: TopicLayout(
            partitions=len(described[name]["partitions"]),
            replication_factors={len(p["replicas"]) for p in described[name]["partitions"]},
            configs=configs.get(name, {}),
        )
        for name in names
    }


async def partition_leaders(bootstrap: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    """The node id leading each partition of ``topics`` right now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    return {
        TopicPartition(topic["topic"], partition["partition"]): partition["leader"]
        for topic in described
        for partition in topic["partitions"]
    }


async def publication_times(deployment: Deployment, kind: str) -> list[float]:
    """Every record's timestamp (s since the epoch) on a topic of the deployment, sorted.

    The producer stamps a record when it sends it (CreateTime): on the snapshot topic, when
    the service published; on an input topic, when the test's sender sent.
    """
    topic = deployment.topic(kind)
    consumer = AIOKafkaConsumer(bootstrap_servers=deployment.kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(deployment.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        stamps: list[float] = []
        deadline = time.monotonic() + 60
        while any([await consumer.position(tp) < end[tp] for tp in partitions]):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            batches: dict[Any, list[Any]] = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                stamps += [r.timestamp / 1000 for r in records if r.offset < end[tp]]
        return sorted(stamps)
    finally:
        await consumer.stop()


def longest_gap(stamps: list[float], start: float, end: float) -> tuple[float, float]:
    """The longest time without a record that begins in [start, end]: (length, its start)."""
    best = (0.0, start)
    for before, after in itertools.pairwise(stamps):
        if start <= after and before <= end and after - before > best[0]:
            best = (after - before, before)
    return best
