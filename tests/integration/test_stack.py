"""The servers tests/servers.py hands out are real and keep data across restarts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import AsyncMongoClient

from dev.servers.kafka import KafkaServer
from dev.servers.mongo import MongoServer


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def _create_topic(bootstrap: str, topic: str, partitions: int = 3) -> None:
    # Explicit, so the test doesn't depend on auto.create.topics.enable of an env-given broker.
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(topic, partitions, 1)])
        assert all(entry[1] == 0 for entry in response.topic_errors), response
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def _consume_one(bootstrap: str, topic: str, group: str) -> tuple[bytes | None, bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=60)
        await consumer.commit()
    finally:
        await consumer.stop()
    assert record.value is not None
    return record.key, record.value


@pytest.fixture
async def mongo(mongodb_uri: str) -> AsyncIterator[AsyncMongoClient[dict[str, object]]]:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongodb_uri)
    try:
        yield client
    finally:
        await client.close()


async def test_kafka_produces_and_consumes_on_a_fresh_topic(kafka_bootstrap: str) -> None:
    topic = _unique("stack-test")
    await _create_topic(kafka_bootstrap, topic)
    await _produce(kafka_bootstrap, topic, b"campaign-1", b"hello")

    # A consumer group also exercises the group coordinator (__consumer_offsets).
    key, value = await _consume_one(kafka_bootstrap, topic, _unique("stack-test-group"))
    assert (key, value) == (b"campaign-1", b"hello")


async def test_mongo_commits_and_aborts_multi_document_transactions(
    mongo: AsyncMongoClient[dict[str, object]],
) -> None:
    db = mongo[_unique("stack_test").replace("-", "_")]
    try:
        async with mongo.start_session() as session, await session.start_transaction():
            await db.ledger.insert_one({"_id": "v1", "n": 1}, session=session)
            await db.events.insert_one({"_id": "e1", "of": "v1"}, session=session)
            # Isolation: not visible outside the transaction before commit.
            assert await db.ledger.find_one({"_id": "v1"}) is None
        assert await db.ledger.find_one({"_id": "v1"}) == {"_id": "v1", "n": 1}
        assert await db.events.find_one({"_id": "e1"}) == {"_id": "e1", "of": "v1"}

        with pytest.raises(RuntimeError, match="roll back"):
            async with mongo.start_session() as session, await session.start_transaction():
                await db.ledger.insert_one({"_id": "v2"}, session=session)
                await db.events.insert_one({"_id": "e2"}, session=session)
                raise RuntimeError("roll back")
        assert await db.ledger.find_one({"_id": "v2"}) is None
        assert await db.events.find_one({"_id": "e2"}) is None
    finally:
        await mongo.drop_database(db.name)


async def test_mongo_keeps_data_across_restart(mongo_server: MongoServer) -> None:
    db_name = _unique("stack_restart").replace("-", "_")
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_server.uri)
    try:
        await client[db_name].docs.insert_one({"_id": "kept", "v": 1})
    finally:
        await client.close()

    await mongo_server.arestart()

    client = AsyncMongoClient(mongo_server.uri)
    try:
        assert await client[db_name].docs.find_one({"_id": "kept"}) == {"_id": "kept", "v": 1}
        await client.drop_database(db_name)
    finally:
        await client.close()


async def test_mongo_keeps_acknowledged_writes_across_kill(mongo_server: MongoServer) -> None:
    # SecantusDB loses recently acknowledged writes on SIGKILL unless --sync-on-commit.
    assert mongo_server.sync_on_commit
    db_name = _unique("stack_kill").replace("-", "_")
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_server.uri)
    try:
        await client[db_name].docs.insert_many([{"_id": i} for i in range(20)])
        async with client.start_session() as session, await session.start_transaction():
            await client[db_name].docs.insert_one({"_id": "tx"}, session=session)
    finally:
        await client.close()

    await mongo_server.akill()
    await mongo_server.astart()

    client = AsyncMongoClient(mongo_server.uri)
    try:
        assert await client[db_name].docs.count_documents({}) == 21
        await client.drop_database(db_name)
    finally:
        await client.close()


async def test_kafka_keeps_messages_across_restart(kafka_server: KafkaServer) -> None:
    bootstrap = kafka_server.bootstrap_servers
    topic = _unique("stack-restart")
    await _create_topic(bootstrap, topic, partitions=1)
    await _produce(bootstrap, topic, b"k", b"survives a restart")

    await kafka_server.arestart()

    assert await _consume_one(bootstrap, topic, _unique("stack-restart-group")) == (
        b"k",
        b"survives a restart",
    )


@pytest.mark.slow
async def test_kafka_keeps_messages_across_kill(kafka_server: KafkaServer) -> None:
    # After SIGKILL the controller refuses the new broker incarnation until the old one's
    # session expires (broker.session.timeout.ms, 9 s), so this start takes ~10 s longer.
    bootstrap = kafka_server.bootstrap_servers
    topic = _unique("stack-kill")
    await _create_topic(bootstrap, topic, partitions=1)
    await _produce(bootstrap, topic, b"k", b"survives a crash")

    await kafka_server.akill()
    await kafka_server.astart()

    assert await _consume_one(bootstrap, topic, _unique("stack-kill-group")) == (
        b"k",
        b"survives a crash",
    )
