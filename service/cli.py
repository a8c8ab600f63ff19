"""`campaign-ledger serve` (also `python -m service`) and `campaign-ledger schemas`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import FrameType

import uvicorn

from service.app.telemetry import configure_logging
from service.bootstrap import build
from service.schemas import write_schemas
from service.settings import Settings


class _Server(uvicorn.Server):
    """uvicorn, exiting 0 after a graceful stop.

    uvicorn raises SIGTERM/SIGINT again once it has shut down, so the process would end as
    if killed (status 143) although the batch in flight was finished and nothing was lost.
    """

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


def serve() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    service = build(settings)
    config = uvicorn.Config(
        service.app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,  # our structlog handler formats uvicorn's records too
        access_log=False,
        timeout_graceful_shutdown=30,
    )
    _Server(config).run()


def schemas(out: Path) -> None:
    service = build(Settings.defaults())
    for path in write_schemas(out, service.asyncapi()):
        print(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="campaign-ledger")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="consume, store and serve (the default)")
    generate = commands.add_parser("schemas", help="write JSON Schemas and AsyncAPI")
    generate.add_argument("--out", type=Path, default=Path("schemas"))
    args = parser.parse_args(argv)
    if args.command == "schemas":
        schemas(args.out)
    else:
        serve()


if __name__ == "__main__":
    main(sys.argv[1:])
