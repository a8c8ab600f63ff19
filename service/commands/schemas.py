"""`campaign-ledger schemas --out DIR`: write the JSON Schemas, the AsyncAPI document and the
HTTP API's OpenAPI document, as the code makes them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from service.bootstrap import build
from service.schemas import write_schemas
from service.settings import Settings


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "schemas",
        help="write JSON Schemas, AsyncAPI and OpenAPI",
        description="Write the events' JSON Schemas, the AsyncAPI document and the OpenAPI "
        "document to a directory (the committed copies live in schemas/).",
    )
    parser.add_argument("--out", type=Path, default=Path("schemas"), help="target directory")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    service = build(Settings.defaults())
    for path in write_schemas(args.out, service.asyncapi()):
        print(path)
    openapi = args.out / "openapi.json"
    openapi.write_text(json.dumps(service.app.openapi(), indent=2, sort_keys=False) + "\n")
    print(openapi)
    return 0


def openapi_document() -> dict[str, Any]:
    """The HTTP API's document of a service built with default settings (what is committed)."""
    document: dict[str, Any] = build(Settings.defaults()).app.openapi()
    return document
