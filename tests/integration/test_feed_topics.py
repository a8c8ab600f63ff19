"""An `--role api` instance never creates the topics it follows.

Its feed subscribes to the snapshot and dead-letter topics; a subscription's metadata requests
allow auto-creation, so on a broker with `auto.create.topics.enable` (the local stack's, and
Kafka's default) subscribing too early would create the snapshot topic uncompacted.
"""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from service.adapters.kafka.follower import OutputTopicsFollower
from service.app.streams import RecentDeadLetters, SnapshotFeed
from tests.integration.harness import isolated_settings


async def test_the_feed_waits_for_its_topics_and_creates_none(
    kafka_bootstrap: str, mongodb_uri: str
) -> None:
    settings = isolated_settings(kafka_bootstrap, mongodb_uri)
    feed = SnapshotFeed(max_streams=10, cache_entries=10, cache_seconds=0)
    follower = OutputTopicsFollower(settings, feed, RecentDeadLetters())
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    starting = asyncio.create_task(follower.start())
    try:
        await asyncio.sleep(3)
        assert not starting.done()  # still waiting for the topics
        topics = (settings.topic_snapshot_updated, settings.topic_dead_letter)
        assert not set(topics) & set(await admin.list_topics())  # and it created none
        await admin.create_topics([NewTopic(name, 1, 1) for name in topics])
        await asyncio.wait_for(starting, 30)  # then it follows them
    finally:
        if not starting.done():
            starting.cancel()
        await follower.stop()
        await admin.close()
