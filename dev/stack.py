"""``python -m dev.stack up|down|status|env``: local Kafka and SecantusDB for ``make run``
and CI, without Docker.

Fixed ports (Kafka 9092/9093, MongoDB 27017), state under ``<repo>/.cache/stack/``;
``up kafka-cluster`` adds a three-node cluster (19092-19094, ``env --cluster``). The
servers themselves are in ``dev/servers/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from dev.servers.common import CACHE_DIR, LOCALHOST, StackError, file_lock
from dev.servers.kafka import DEFAULT_KAFKA_CONTROLLER_PORT, DEFAULT_KAFKA_PORT, KafkaServer
from dev.servers.kafka_cluster import DEFAULT_CLUSTER_PORT, KafkaCluster
from dev.servers.mongo import DEFAULT_MONGO_PORT, MongoServer
from dev.servers.process import LocalServer

STACK_DIR = CACHE_DIR / "stack"

T = TypeVar("T")


SERVICES = ("kafka", "mongo")  # what `up` starts when no service is named
OPTIONAL_SERVICES = ("kafka-cluster",)  # three-node KRaft cluster, only when named


@dataclass
class StackConfig:
    """Ports and options of the CLI stack, kept in ``<state-dir>/stack.json`` by ``up``."""

    kafka_port: int = DEFAULT_KAFKA_PORT
    kafka_controller_port: int = DEFAULT_KAFKA_CONTROLLER_PORT
    mongo_port: int = DEFAULT_MONGO_PORT
    sync_on_commit: bool = True
    kafka_cluster_port: int = DEFAULT_CLUSTER_PORT

    @classmethod
    def load(cls, state_dir: Path) -> StackConfig:
        try:
            raw = json.loads((state_dir / "stack.json").read_text())
        except (FileNotFoundError, ValueError):
            return cls()
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def save(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / "stack.json").write_text(json.dumps(self.__dict__, indent=2) + "\n")


def cli_servers(state_dir: Path, config: StackConfig) -> dict[str, LocalServer | KafkaCluster]:
    """The CLI's servers: fixed ports, data/logs/pid files under ``state_dir``."""
    base = config.kafka_cluster_port
    return {
        "kafka-cluster": KafkaCluster(
            state_dir / "kafka-cluster", ports=[(base + i, base + 3 + i) for i in range(3)]
        ),
        "kafka": KafkaServer(
            state_dir / "kafka",
            port=config.kafka_port,
            controller_port=config.kafka_controller_port,
        ),
        "mongo": MongoServer(
            state_dir / "mongo", port=config.mongo_port, sync_on_commit=config.sync_on_commit
        ),
    }


def env_lines(config: StackConfig, *, export: bool = False, cluster: bool = False) -> list[str]:
    kafka = f"{LOCALHOST}:{config.kafka_port}"
    if cluster:
        kafka = ",".join(f"{LOCALHOST}:{config.kafka_cluster_port + i}" for i in range(3))
    values = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "MONGODB_URI": f"mongodb://{LOCALHOST}:{config.mongo_port}/?directConnection=true",
    }
    if export:
        # Quoted: '?' in the URI would otherwise be a glob for some shells' `export`.
        return [f"export {k}='{v}'" for k, v in values.items()]
    return [f"{k}={v}" for k, v in values.items()]


def _describe(server: LocalServer | KafkaCluster) -> str:
    if isinstance(server, KafkaCluster):
        return f"kafka-cluster  {server.bootstrap_servers}"
    if isinstance(server, KafkaServer):
        return f"kafka  {server.bootstrap_servers}"
    if isinstance(server, MongoServer):
        return f"mongo  {server.uri}"
    return server.name


def _cmd_up(state_dir: Path, config: StackConfig, services: Sequence[str]) -> int:
    with file_lock(state_dir / ".lock"):
        previous = StackConfig.load(state_dir)
        current = cli_servers(state_dir, previous)
        wanted = cli_servers(state_dir, config)
        result = StackConfig(**previous.__dict__)
        for name in services:
            server = wanted[name]
            old = current[name]
            if old.is_running():
                if old.is_healthy() or _became_healthy(old):
                    note = "" if old.port == server.port else " (other ports asked: `down` first)"
                    print(f"{_describe(old)}  already running, pid {old.pid}{note}")
                    server = old
                else:
                    print(f"{name}: pid {old.pid} is not answering; stopping it", file=sys.stderr)
                    old.stop()
            if not server.is_running():
                server.start()
                took = f"{server.startup_seconds:.1f}s"
                print(f"{_describe(server)}  started in {took}, pid {server.pid}")
                print(f"       log {server.log_file}")
            if isinstance(server, KafkaServer):
                result.kafka_port = server.port
                result.kafka_controller_port = server.controller_port
            elif isinstance(server, MongoServer):
                result.mongo_port = server.port
                result.sync_on_commit = server.sync_on_commit
            elif isinstance(server, KafkaCluster):
                result.kafka_cluster_port = server.port
            result.save(state_dir)  # after each service, so `down` finds a half-done `up`
    return 0


def _became_healthy(server: LocalServer | KafkaCluster) -> bool:
    """A concurrent `up` may still be starting it: give it its start-up time."""
    try:
        server._wait_ready(server.ready_timeout)
    except StackError:
        return False
    return True


def _cmd_down(state_dir: Path, services: Sequence[str]) -> int:
    with file_lock(state_dir / ".lock"):
        servers = cli_servers(state_dir, StackConfig.load(state_dir))
        for name in services:
            server = servers[name]
            pid = server.pid
            if pid is None:
                print(f"{name}: not running")
                continue
            server.stop()
            print(f"{name}: stopped (pid {pid})")
    return 0


def _cmd_status(state_dir: Path, services: Sequence[str]) -> int:
    servers = cli_servers(state_dir, StackConfig.load(state_dir))
    healthy_all = True
    for name in services:
        server = servers[name]
        pid = server.pid
        if pid is None:
            state, healthy_all = "stopped", False
        elif server.is_healthy():
            state = f"running, healthy (pid {pid})"
        else:
            state, healthy_all = f"running, NOT answering (pid {pid})", False
        print(f"{_describe(server)}  {state}\n       log {server.log_file}")
    return 0 if healthy_all else 1


def _pick(given: T | None, remembered: T) -> T:
    return remembered if given is None else given


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dev.stack",
        description="Run real Kafka (KRaft) and SecantusDB locally, without Docker.",
    )
    parser.add_argument(
        "--state-dir", type=Path, default=STACK_DIR, help="pid files, logs and data"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start (idempotent: healthy servers are left alone)")
    up.add_argument(
        "services",
        nargs="*",
        metavar="SERVICE",
        help="kafka, mongo (default: both), kafka-cluster (three KRaft nodes, replication "
        "factor 3, min.insync.replicas 2)",
    )
    # Unset options keep what the last `up` in this state dir used (stack.json), else defaults.
    up.add_argument("--kafka-port", type=int, help=f"default {DEFAULT_KAFKA_PORT}")
    up.add_argument(
        "--kafka-controller-port", type=int, help=f"default {DEFAULT_KAFKA_CONTROLLER_PORT}"
    )
    up.add_argument("--mongo-port", type=int, help=f"default {DEFAULT_MONGO_PORT}")
    up.add_argument(
        "--kafka-cluster-port",
        type=int,
        help=f"first node's port, default {DEFAULT_CLUSTER_PORT} (nodes on it and the next "
        "two, their controllers on the three after)",
    )
    up.add_argument(
        "--sync-on-commit",
        action=argparse.BooleanOptionalAction,
        help="fsync SecantusDB's log at every commit (default on; off is faster, but a "
        "kill -9 loses recently acknowledged writes)",
    )
    for name, text in (("down", "stop what `up` started"), ("status", "exit 1 unless healthy")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument(
            "services", nargs="*", metavar="SERVICE", help="kafka, mongo, kafka-cluster"
        )
    env = sub.add_parser("env", help="print KAFKA_BOOTSTRAP_SERVERS=… and MONGODB_URI=…")
    env.add_argument("--export", action="store_true", help="as quoted `export` lines for eval")
    env.add_argument(
        "--cluster", action="store_true", help="KAFKA_BOOTSTRAP_SERVERS of the three-node cluster"
    )
    args = parser.parse_args(argv)
    # Readiness probes retry through connection errors that aiokafka would print to stderr.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    state_dir: Path = args.state_dir.resolve()
    services = tuple(getattr(args, "services", None) or SERVICES)
    unknown = sorted(set(services) - {*SERVICES, *OPTIONAL_SERVICES})
    if unknown:
        parser.error(f"unknown service(s) {unknown}; choose from {[*SERVICES, *OPTIONAL_SERVICES]}")
    try:
        if args.command == "up":
            remembered = StackConfig.load(state_dir)
            config = StackConfig(
                kafka_port=_pick(args.kafka_port, remembered.kafka_port),
                kafka_controller_port=_pick(
                    args.kafka_controller_port, remembered.kafka_controller_port
                ),
                mongo_port=_pick(args.mongo_port, remembered.mongo_port),
                sync_on_commit=_pick(args.sync_on_commit, remembered.sync_on_commit),
                kafka_cluster_port=_pick(args.kafka_cluster_port, remembered.kafka_cluster_port),
            )
            return _cmd_up(state_dir, config, services)
        if args.command == "down":
            return _cmd_down(state_dir, services)
        if args.command == "status":
            return _cmd_status(state_dir, services)
        config = StackConfig.load(state_dir)
        print("\n".join(env_lines(config, export=args.export, cluster=args.cluster)))
        return 0
    except StackError as exc:
        print(f"dev.stack: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
