"""`campaign-ledger schemas --out DIR`: write the JSON Schemas and the AsyncAPI document."""

from __future__ import annotations

import argparse
from pathlib import Path

from service.bootstrap import build
from service.schemas import write_schemas
from service.settings import Settings


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "schemas",
        help="write JSON Schemas and AsyncAPI",
        description="Write the events' JSON Schemas and the AsyncAPI document to a directory "
        "(the committed copies live in schemas/).",
    )
    parser.add_argument("--out", type=Path, default=Path("schemas"), help="target directory")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    service = build(Settings.defaults())
    for path in write_schemas(args.out, service.asyncapi()):
        print(path)
    return 0
