"""The six topics: created or checked before anything consumes or produces."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaTimeoutError, TopicAlreadyExistsError, for_code
from faststream.kafka import KafkaBroker

from service.settings import Settings

log = structlog.get_logger(__name__)


class MissingTopics(RuntimeError):
    """Topics the service needs are not there (or this user may not DESCRIBE them)."""

    def __init__(self, missing: Sequence[str]) -> None:
        self.missing = tuple(missing)
        super().__init__(
            f"Kafka topics missing: {', '.join(self.missing)}. KAFKA_CREATE_TOPICS is false, "
            "so the service does not create them: create them (or grant this user DESCRIBE "
            "on them) and start again."
        )


# The snapshot topic is a changelog keyed by campaign id: compaction keeps every campaign's
# latest snapshot, so a new reader rebuilds the whole state from it.
SNAPSHOT_TOPIC_CONFIG = {"cleanup.policy": "compact"}


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """The six topics, each with the configuration it is created with."""
    configs: dict[str, dict[str, str]] = {name: {} for name in settings.input_topics}
    configs[settings.topic_snapshot_updated] = dict(SNAPSHOT_TOPIC_CONFIG)
    configs[settings.topic_dead_letter] = {}
    return configs


async def ensure_topics(broker: KafkaBroker, settings: Settings) -> None:
    """Make sure the six topics exist, before any consumer or producer asks for them.

    Called after ``broker.connect()`` and before ``broker.start()``. Existence is read from
    the cluster metadata of all topics this user may DESCRIBE (``list_topics``): no other
    right is needed, and unlike a metadata request naming the topics (``describe_topics``,
    which aiokafka sends with ``allow_auto_topic_creation``) it cannot create anything.
    Missing topics are created with ``KAFKA_CREATE_TOPICS`` (existing ones are never
    altered); without it the service logs them, says so on stderr and refuses to start.
    """
    admin = broker.config.broker_config.admin.client
    wanted = topic_configs(settings)
    existing = set(await admin.list_topics())
    missing = [name for name in wanted if name not in existing]
    if not missing:
        return
    if not settings.kafka_create_topics:
        error = MissingTopics(missing)
        log.error("kafka_topics_missing", missing=missing, create_topics=False)
        print(f"campaign-ledger: {error}", file=sys.stderr)
        raise error
    response = await admin.create_topics(
        [
            NewTopic(
                name,
                num_partitions=settings.kafka_topic_partitions,
                replication_factor=settings.kafka_topic_replication_factor,
                topic_configs=wanted[name],
            )
            for name in missing
        ]
    )
    for entry in response.to_object()["topic_errors"]:
        code = entry["error_code"]
        if code:
            error_type = for_code(code)
            if error_type is TopicAlreadyExistsError:
                continue  # another instance created it meanwhile
            raise error_type(f"creating topic {entry['topic']}: {entry.get('error_message')}")
    await _wait_for_leaders(admin, missing)
    log.info(
        "kafka_topics_created",
        topics=missing,
        partitions=settings.kafka_topic_partitions,
        replication_factor=settings.kafka_topic_replication_factor,
    )


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, topics: Sequence[str], timeout: float = 30.0
) -> None:
    """Return once every partition of the new ``topics`` has a leader in the metadata.

    The controller answers CreateTopics before every broker has the new metadata; consumers
    that subscribe right after would otherwise find no partitions. (A metadata request naming
    topics may auto-create them: fine here, they exist and this user may create.)
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        described = await admin.describe_topics(list(topics))
        if all(
            topic["error_code"] == 0
            and topic["partitions"]
            and all(p["error_code"] == 0 and p["leader"] >= 0 for p in topic["partitions"])
            for topic in described
        ):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise KafkaTimeoutError(f"new topics {list(topics)} have no leaders after {timeout}s")
        await asyncio.sleep(0.1)
