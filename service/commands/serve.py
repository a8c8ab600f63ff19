"""`campaign-ledger serve [--role all|consumer|api]` (also `python -m service`).

`all` (the default, for `make run` and compose): consumers and the HTTP API in one process.
`consumer`: the Kafka consumer group and maintenance; HTTP only for /healthz, /readyz,
/metrics. `api`: the HTTP API, no consumer group membership. k8s/ runs the two apart.
"""

from __future__ import annotations

import argparse
import gc
import math
import socket
from collections.abc import Callable
from types import FrameType
from typing import Any, get_args

import structlog
import uvicorn

from service.app.telemetry import configure_logging
from service.bootstrap import Role, build
from service.settings import Settings

log = structlog.get_logger(__name__)

GC_YOUNG_THRESHOLD = 50_000


class _Server(uvicorn.Server):
    """uvicorn, beginning the stop at once and exiting 0 after a graceful stop.

    `on_exit` runs first on SIGTERM: readiness off and open streams ended, so the HTTP drain
    is not held by them. uvicorn raises SIGTERM/SIGINT again once it has shut down, so the
    process would end as if killed (status 143) although the batch in flight was finished
    and nothing was lost.
    """

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.on_exit()
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


def ports(settings: Settings, role: Role) -> list[int]:
    """The ports this role listens on: the API's (HTTP_PORT) unless it serves no API, and
    MANAGEMENT_PORT for /healthz, /readyz, /metrics when set."""
    management = settings.management_port
    if role == "consumer":
        return [management if management is not None else settings.http_port]
    if management is None or management == settings.http_port:
        return [settings.http_port]
    return [settings.http_port, management]


def uvicorn_config(app: Any, settings: Settings, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.http_host,
        port=port,
        log_config=None,  # our structlog handler formats uvicorn's records too
        access_log=False,
        # The shutdown budget's HTTP drain (k8s/: preStop + this + the consumer's
        # KAFKA_SHUTDOWN_TIMEOUT_SECONDS < terminationGracePeriodSeconds).
        timeout_graceful_shutdown=math.ceil(settings.http_shutdown_timeout_seconds),
    )


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "serve",
        help="consume, store and serve (the default)",
        description="Consume the campaign topics, store to MongoDB, publish snapshots and "
        "serve the HTTP API. Stops cleanly on SIGTERM.",
    )
    parser.add_argument(
        "--role",
        choices=get_args(Role),
        default="all",
        help="all: consumers and the HTTP API (default); consumer: the Kafka consumer group "
        "and maintenance, HTTP for health and metrics only; api: the HTTP API, not a member "
        "of the consumer group",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    role: Role = args.role
    # What this process runs with, for whoever debugs it; secrets dump as "**********".
    log.debug("settings", role=role, **settings.model_dump(mode="json"))
    service = build(settings, role)
    # What start-up allocated (modules, models, settings) lives as long as the process: out
    # of the collector's sight, so a full collection does not walk it again and again while
    # batches allocate (a heap of long-lived objects otherwise costs every gen-2 pass).
    gc.freeze()
    # A batch allocates ~100 objects per event and keeps most of them until it ends: at the
    # default 700 allocations per young collection, each batch ran ~70 of them, walking and
    # promoting the same live objects. 7 % fewer instructions per event in the rules'
    # benchmark (callgrind); garbage cycles wait at most 50,000 allocations.
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)
    sockets: list[socket.socket] = []
    for port in ports(settings, role):
        config = uvicorn_config(service.app, settings, port)
        sockets.append(config.bind_socket())
    # One server, one lifespan, on every socket; PortSplit tells the ports apart.
    _Server(config, service.begin_stop).run(sockets=sockets)
    return 0
