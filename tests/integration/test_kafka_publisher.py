"""KafkaPublisher: record batches per partition, as Kafka would place and order the records."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from service.adapters.kafka.publisher import KafkaPublisher
from service.app.outbox import OutboxEntry
from service.settings import Settings

PARTITIONS = 3


def _entry(campaign: str | None, n: int, size: int) -> OutboxEntry:
    kind = "snapshot" if campaign else "dead_letter"
    body = f"{campaign}:{n}:".encode() + b"x" * size
    return OutboxEntry(f"{campaign}:{n}", campaign or "", kind, n, campaign, body)


async def test_every_record_lands_where_and_in_the_order_kafka_would_put_it(
    kafka_bootstrap: str,
) -> None:
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_snapshot_updated=f"pub-{tag}.snapshot",
        topic_dead_letter=f"pub-{tag}.dead",
    )
    topics = [settings.topic_snapshot_updated, settings.topic_dead_letter]
    reference_topic = f"pub-{tag}.reference"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in [*topics, reference_topic]])
    finally:
        await admin.close()
    campaigns = [f"c-{tag}-{n}" for n in range(5)]
    # 150 x 10 KB for the first campaign: more than one 512 KiB record batch to its partition.
    entries = [_entry(campaigns[0], n, 10_000) for n in range(150)]
    entries += [_entry(c, n, 200) for n in range(20) for c in campaigns[1:]]
    entries += [_entry(None, n, 100) for n in range(3)]  # unkeyed: any partition

    publisher = KafkaPublisher(settings)
    await publisher.start()
    try:
        await publisher.publish(entries)
    finally:
        await publisher.stop()

    # Where the same keys go through aiokafka's own send (Kafka's default partitioner).
    reference = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await reference.start()
    try:
        expected = {
            c: (await reference.send_and_wait(reference_topic, b"", key=c.encode()))
            for c in campaigns
        }
    finally:
        await reference.stop()

    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        received: list[tuple[str, int, bytes | None, bytes]] = []
        while len(received) < len(entries):
            batch = await consumer.getmany(timeout_ms=10_000)
            assert batch, f"only {len(received)} of {len(entries)} records arrived"
            for records in batch.values():
                received += [(r.topic, r.partition, r.key, r.value or b"") for r in records]
                assert all(dict(r.headers)["content-type"] for r in records)
    finally:
        await consumer.stop()

    assert sorted(v for *_, v in received) == sorted(e.value for e in entries)
    for campaign in campaigns:
        mine = [(p, v) for _, p, k, v in received if k == campaign.encode()]
        assert {p for p, _ in mine} == {expected[campaign].partition}
        assert [v for _, v in mine] == [e.value for e in entries if e.key == campaign]
