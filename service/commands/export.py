"""`campaign-ledger export <campaign_id>`: the export document on stdout (as over HTTP)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from pymongo.errors import PyMongoError

from service.adapters.mongo_reads import MongoReads
from service.adapters.mongo_store import MongoStore
from service.app.export import CampaignNotFound, export_campaign
from service.commands.common import OK, REFUSED, CommandError, progress, unavailable
from service.settings import Settings


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "export",
        help="write a campaign's export document to stdout",
        description="Write every document of the campaign (deleted ones too) as one JSON "
        "object to standard output, byte for byte what GET /campaigns/{id}/export answers. "
        "MongoDB settings come from the environment. Restore it with `import`.",
        epilog="Exit codes: 0 done, 1 unknown campaign, 2 bad arguments, 3 MongoDB unreachable.",
    )
    parser.add_argument("campaign_id", help="the campaign to export")
    parser.set_defaults(run=run)


async def _export(settings: Settings, campaign_id: str) -> None:
    store = MongoStore.connect(settings.mongodb_uri.get_secret_value(), settings.mongodb_database)
    out = sys.stdout.buffer
    try:
        document = await export_campaign(MongoReads(store.db), campaign_id)
        with progress() as bar:
            task = bar.add_task(f"exporting {campaign_id} (bytes)", total=None)
            async for chunk in document:
                out.write(chunk)
                bar.advance(task, len(chunk))
        out.write(b"\n")
        out.flush()
    finally:
        await store.close()


def run(args: argparse.Namespace) -> int:
    try:
        asyncio.run(_export(Settings(), args.campaign_id))
    except CampaignNotFound:
        raise CommandError(
            REFUSED,
            "campaign_not_found",
            f"no campaign {args.campaign_id} in this database",
            campaign_id=args.campaign_id,
        ) from None
    except PyMongoError as error:
        unavailable("mongodb", error)
    return OK
