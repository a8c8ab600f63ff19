"""The raw ceiling of `make bench-compare`: what the database takes with nothing else to do.

One Python process upserts version-like documents, built from the same artifact events the
other systems drain, in unordered bulks of `--batch` into a `versions` collection with the
service's validator and indexes, one transaction per bulk (or none, with
`--no-transaction`). It prints one JSON line: seconds, documents, its own CPU seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import orjson
from pymongo import MongoClient, ReplaceOne
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from bench.events import artifact_events, version_document
from service.adapters import mongo_schema as cols

Document = dict[str, Any]


def prepare(client: MongoClient[Document], database: str) -> None:
    db = client[database]
    if cols.VERSIONS not in db.list_collection_names():
        db.create_collection(cols.VERSIONS, validator=cols.VALIDATORS[cols.VERSIONS])
        db[cols.VERSIONS].create_indexes(cols.INDEXES[cols.VERSIONS])


def upsert_all(
    client: MongoClient[Document],
    database: str,
    documents: list[Document],
    *,
    batch: int,
    transaction: bool,
) -> float:
    majority = WriteConcern("majority")
    collection = client[database].get_collection(cols.VERSIONS, write_concern=majority)
    started = time.perf_counter()
    for first in range(0, len(documents), batch):
        ops = [
            ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in documents[first : first + batch]
        ]
        if not transaction:
            collection.bulk_write(ops, ordered=False)
            continue
        with (
            client.start_session() as session,
            session.start_transaction(read_concern=ReadConcern("snapshot"), write_concern=majority),
        ):
            collection.bulk_write(ops, ordered=False, session=session)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling")
    parser.add_argument("--uri", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--tag", required=True, help="the events' campaign prefix")
    parser.add_argument("--campaigns", type=int, required=True)
    parser.add_argument("--versions", type=int, required=True)
    parser.add_argument("--offset", type=int, default=0, help="versions already stored")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--no-transaction", action="store_true")
    args = parser.parse_args()
    events = artifact_events(args.tag, args.campaigns, args.versions, first_version=args.offset + 1)
    documents = [version_document(orjson.loads(value)) for _, value in events]
    client: MongoClient[Document] = MongoClient(args.uri, tz_aware=True)
    try:
        prepare(client, args.database)
        cpu = time.process_time()
        seconds = upsert_all(
            client, args.database, documents, batch=args.batch, transaction=not args.no_transaction
        )
        cpu = time.process_time() - cpu
    finally:
        client.close()
    sys.stdout.write(
        orjson.dumps({"seconds": seconds, "documents": len(documents), "cpu": cpu}).decode() + "\n"
    )


if __name__ == "__main__":
    main()
