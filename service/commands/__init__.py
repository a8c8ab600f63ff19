"""The `campaign-ledger` command line: one module per command, the parser here.

Each command module has `add_parser(commands)`, which registers its sub-parser and sets
`run` (a function of the parsed arguments returning the exit code) as its default. Exit codes
are listed in `service.commands.common`.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from service.commands import dead_letters, export, import_, schemas, serve
from service.commands.common import INTERNAL, CommandError, fail


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="campaign-ledger",
        description="Versioned, audited memory of AI-generated campaign artifacts.",
        epilog="Exit codes of the operations commands: 0 done, 1 refused (conflict, invalid "
        "input, unknown campaign), 2 bad arguments, 3 Kafka or MongoDB unreachable, "
        "4 unexpected error.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (serve, schemas, dead_letters, export, import_):
        module.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command is None:  # `campaign-ledger` alone serves, as it always did
        args = build_parser().parse_args(["serve"])
    try:
        code = args.run(args)
    except CommandError as error:
        error.report()
        code = error.exit_code
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, like other Unix tools.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    except Exception as error:
        # Not 1: a script must not take a crash for a refusal.
        traceback.print_exc()
        fail("internal_error", f"{type(error).__name__}: {error}")
        code = INTERNAL
    sys.exit(code)
