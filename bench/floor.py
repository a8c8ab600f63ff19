"""The latency floor of `make bench-compare`: the least a consumer keeping the ledger's
write guarantee does per event, on the same broker and database as the service.

One Python process reads the latency phase's topic (every partition assigned, no group) and,
for each fetch, the moment it returns, runs one MongoDB transaction: the events' version
documents inserted (the service's validator and indexes) and each campaign's document
replaced, compare-and-set on its revision, as one client-level bulkWrite (the two writes a
steady event costs the service, sent as it sends them, and the transaction that keeps an
audit from existing without its version). Nothing else:
no decoding beyond JSON, no rules, no snapshot, no publication, no offsets. It prints `ready`
once assigned, `warm` after its first commit, and at the end, once it has `--expect`
events, one JSON line: each event's id and the wall clock at its transaction's commit.

What the service adds on top of this floor is its own; what the floor costs is the
database's and Kafka's, whatever the design.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from pymongo import AsyncMongoClient, InsertOne, ReplaceOne
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from bench.events import version_document
from service.adapters import mongo_schema as cols

Document = dict[str, Any]
CAMPAIGNS = "floor_campaigns"


async def prepare(client: AsyncMongoClient[Document], database: str) -> None:
    db = client[database]
    if cols.VERSIONS not in await db.list_collection_names():
        await db.create_collection(cols.VERSIONS, validator=cols.VALIDATORS[cols.VERSIONS])
        await db[cols.VERSIONS].create_indexes(cols.INDEXES[cols.VERSIONS])
        await db.create_collection(CAMPAIGNS)


async def store(
    client: AsyncMongoClient[Document],
    database: str,
    events: list[Document],
    revisions: dict[str, int],
) -> None:
    """One transaction: the versions inserted, each campaign's document replaced if its
    revision is the one last written (the service's compare-and-set)."""
    majority = WriteConcern("majority")
    touched: dict[str, int] = {}
    for event in events:
        cid = event["data"]["campaign_id"]
        touched[cid] = touched.get(cid, revisions.get(cid, 0)) + 1
    versions, campaigns = f"{database}.{cols.VERSIONS}", f"{database}.{CAMPAIGNS}"
    models: list[Any] = [
        InsertOne(namespace=versions, document=version_document(e)) for e in events
    ]
    models += [
        ReplaceOne(
            namespace=campaigns,
            filter={"_id": cid, "revision": revisions.get(cid, 0)},
            replacement={"_id": cid, "revision": revision},
            upsert=cid not in revisions,
        )
        for cid, revision in touched.items()
    ]
    async with (
        client.start_session() as session,
        await session.start_transaction(read_concern=ReadConcern(), write_concern=majority),
    ):
        # One client-level bulkWrite and the commit: the service's two round trips (no read
        # concern, as the service's write-first batches: SecantusDB refuses one on bulkWrite).
        await client.bulk_write(models, session=session, ordered=True)
    revisions.update(touched)


async def run(args: argparse.Namespace) -> None:
    client: AsyncMongoClient[Document] = AsyncMongoClient(args.uri, tz_aware=True)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.kafka, enable_auto_commit=False, fetch_max_wait_ms=500
    )
    await prepare(client, args.database)
    await consumer.start()
    try:
        while not (partitions := consumer.partitions_for_topic(args.topic)):
            await consumer._client.force_metadata_update()  # no public call for it
            await asyncio.sleep(0.1)
        consumer.assign([TopicPartition(args.topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        revisions: dict[str, int] = {}
        committed: list[tuple[str, float]] = []
        while len(committed) < args.expect:
            fetched = await consumer.getmany(timeout_ms=500)
            events = [orjson.loads(r.value) for rs in fetched.values() for r in rs]
            if not events:
                continue
            await store(client, args.database, events, revisions)
            at = time.time()
            if not committed:
                sys.stdout.write("warm\n")  # the warm-up event: the clock may start
                sys.stdout.flush()
            committed.extend((event["id"], at) for event in events)
    finally:
        await consumer.stop()
        await client.close()
    sys.stdout.write(orjson.dumps(committed).decode() + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor")
    parser.add_argument("--kafka", required=True)
    parser.add_argument("--uri", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--expect", type=int, required=True, help="events to store, then end")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
