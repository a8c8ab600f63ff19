"""`campaign-ledger dead-letters list|replay`: see and send again what the ledger refused."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable

from service.adapters.kafka.replay import DeadLetterReader, KafkaUnavailable, ReplayProducer
from service.app.replay import DeadLetter, NotReplayable, Replay, Selection, replay_of
from service.commands.common import OK, emit, fail, progress, rfc3339, unavailable
from service.settings import Settings

_EPILOG = "Exit codes: 0 done, 2 bad arguments, 3 Kafka unreachable."


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "dead-letters",
        help="list or replay dead letters",
        description="The dead-letter topic (TOPIC_DEAD_LETTER), read from its beginning to its "
        "current end without a consumer group. Kafka settings come from the environment, as "
        "for `serve`.",
        epilog=_EPILOG,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        help="print dead letters, one JSON object a line",
        description="Print each chosen dead letter as one JSON object a line: `dead_letter` "
        "(its topic:partition:offset), `time` (when it was refused), then its data: reason, "
        "detail, topic, partition, offset, key, value or value_base64, headers.",
        epilog=_EPILOG,
    )
    _selection_arguments(listing, reason_required=False)
    listing.set_defaults(run=run_list)
    replay = actions.add_parser(
        "replay",
        help="send chosen dead letters back to their original topic",
        description="Send each chosen dead letter's original key, value and headers back to "
        "its original topic, with the header campaign-ledger-replayed-from: "
        "<dead-letter topic>:<partition>:<offset>. Without --yes only prints what it would "
        "send. Prints one JSON line per record, then {matched, sent, skipped, dry_run}. "
        "Replaying twice applies nothing twice (the ledger drops what it already applied).",
        epilog=_EPILOG,
    )
    _selection_arguments(replay, reason_required=True)
    replay.add_argument("--yes", action="store_true", help="really send (default: dry run)")
    replay.set_defaults(run=run_replay)


def _selection_arguments(parser: argparse.ArgumentParser, *, reason_required: bool) -> None:
    parser.add_argument(
        "--reason",
        action="append",
        required=reason_required,
        metavar="R",
        help="only this reason (e.g. held_too_long); may be given more than once",
    )
    parser.add_argument(
        "--since",
        type=rfc3339,
        metavar="RFC3339",
        help="only dead letters made at or after this time (e.g. 2026-11-28T08:00:00Z)",
    )
    parser.add_argument(
        "--topic", action="append", metavar="T", help="only records refused from this topic"
    )
    parser.add_argument(
        "--campaign", action="append", metavar="C", help="only records of this campaign"
    )


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(
        reasons=frozenset(args.reason or ()),
        since=args.since,
        topics=frozenset(args.topic or ()),
        campaigns=frozenset(args.campaign or ()),
    )


async def _each(
    settings: Settings, selection: Selection, handle: Callable[[DeadLetter], None]
) -> None:
    """Read the topic to its current end, handing each chosen dead letter on as it comes."""
    with progress() as bar:
        async with DeadLetterReader(settings) as reader:
            task = bar.add_task("reading dead letters", total=reader.total)
            async for letter in reader.read():
                bar.advance(task)
                if letter is not None and selection.matches(letter):
                    handle(letter)


def run_list(args: argparse.Namespace) -> int:
    def show(letter: DeadLetter) -> None:
        emit(letter.listing())

    try:
        asyncio.run(_each(Settings(), _selection(args), show))
    except KafkaUnavailable as error:
        unavailable("kafka", error)
    return OK


async def _replay(settings: Settings, selection: Selection, send: bool) -> dict[str, int]:
    replays: list[Replay] = []
    skipped = 0

    def choose(letter: DeadLetter) -> None:
        nonlocal skipped
        try:
            replays.append(replay_of(letter))
        except NotReplayable as error:
            skipped += 1
            fail("not_replayable", str(error), dead_letter=letter.coordinates)

    await _each(settings, selection, choose)
    if not send:
        for replay in replays:
            emit(replay.describe("would_send"))
        return {"matched": len(replays) + skipped, "sent": 0, "skipped": skipped}
    with progress() as bar:
        task = bar.add_task("replaying", total=len(replays))
        async with ReplayProducer(settings) as producer:

            def acked(replay: Replay) -> None:
                bar.advance(task)
                emit(replay.describe("sent"))

            sent = await producer.send(replays, acked)
    return {"matched": len(replays) + skipped, "sent": sent, "skipped": skipped}


def run_replay(args: argparse.Namespace) -> int:
    try:
        summary = asyncio.run(_replay(Settings(), _selection(args), send=args.yes))
    except KafkaUnavailable as error:
        unavailable("kafka", error)
    emit({**summary, "dry_run": not args.yes})
    return OK
