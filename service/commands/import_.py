"""`campaign-ledger import <file>`: load an export into the configured database."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from aiokafka.errors import KafkaError
from pymongo.errors import PyMongoError

from service.adapters.kafka.broker import build_broker
from service.adapters.kafka.publisher import KafkaPublisher
from service.adapters.mongo_restore import MongoRestore
from service.adapters.mongo_store import MongoStore
from service.app.restore import (
    InvalidExport,
    RestoreConflict,
    RestoreResult,
    load_export,
    restore,
)
from service.app.store import ConcurrentUpdate, StoreRejected, StoreUnavailable
from service.commands.common import OK, REFUSED, CommandError, emit, progress, unavailable
from service.settings import Settings


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "import",
        help="load an export document into this database and publish its snapshot",
        description="Load an export (the output of `export`, or of GET /campaigns/{id}/export) "
        "into MONGODB_DATABASE in one transaction: every document exactly as exported (ids, "
        "numbers, times), the snapshot rebuilt and published to TOPIC_SNAPSHOT_UPDATED with "
        "the exported revision. Idempotent: a document already stored with the same content "
        "is skipped, so importing the same file twice changes nothing; one stored with other "
        "content refuses the whole import, naming the collection and _id. Prints one JSON "
        "summary line.",
        epilog="Exit codes: 0 done (or nothing to do), 1 refused (conflict or not a valid "
        "export; nothing written), 2 bad arguments or unreadable file, 3 MongoDB or Kafka "
        "unreachable (when only Kafka failed, the import is stored and its snapshot waits in "
        "the outbox: run the same import again).",
    )
    parser.add_argument("file", type=Path, help="the export document ('-' for stdin)")
    parser.set_defaults(run=run)


def _read(path: Path) -> bytes:
    if str(path) == "-":
        return sys.stdin.buffer.read()
    try:
        return path.read_bytes()
    except OSError as error:
        raise CommandError(2, "unreadable_file", f"cannot read {path}: {error}") from error


async def _import(settings: Settings, raw: bytes) -> RestoreResult:
    export = load_export(raw)
    store = MongoStore.connect(settings.mongodb_uri.get_secret_value(), settings.mongodb_database)
    broker = build_broker(settings)
    publisher = KafkaPublisher(settings)
    try:
        with progress() as bar:
            task = bar.add_task(f"importing {export.campaign_id}", total=export.count())
            await broker.connect()  # first: with Kafka away, nothing is written at all
            await publisher.start()
            await store.ensure_schema()
            result = await restore(MongoRestore(store), publisher, export)
            bar.update(task, completed=export.count())
        return result
    finally:
        await publisher.stop()
        await broker.stop()
        await store.close()


def run(args: argparse.Namespace) -> int:
    raw = _read(args.file)
    try:
        result = asyncio.run(_import(Settings(), raw))
    except InvalidExport as error:
        raise CommandError(REFUSED, "invalid_export", str(error), file=str(args.file)) from None
    except RestoreConflict as error:
        raise CommandError(
            REFUSED,
            "conflict",
            f"{error.collection}/{error.doc_id} {error.detail}; nothing was imported",
            collection=error.collection,
            _id=error.doc_id,
        ) from None
    except (ConcurrentUpdate, StoreRejected) as error:
        raise CommandError(
            REFUSED, "conflict", f"MongoDB refused the import, nothing written: {error}"
        ) from None
    except (StoreUnavailable, PyMongoError) as error:
        unavailable("mongodb", error)
    except (KafkaError, OSError) as error:
        unavailable("kafka", error)
    emit(
        {
            "campaign_id": result.campaign_id,
            "inserted": result.inserted,
            "unchanged": result.unchanged,
            "marks": result.marks,
            "revision": result.revision,
            "published": result.published,
        }
    )
    if result.held_for_versions:
        sys.stderr.write(
            f"note: {result.held_for_versions} event(s) held here wait for an imported "
            "version; they go to the dead-letter topic as held_too_long after "
            "AUDIT_HOLD_SECONDS: replay them with "
            "`campaign-ledger dead-letters replay --reason held_too_long --yes`\n"
        )
    return OK
