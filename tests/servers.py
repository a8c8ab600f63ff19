"""Pytest plugin giving tests a real Kafka and a real MongoDB-compatible server.

Enabled from tests/conftest.py with ``pytest_plugins = ["tests.servers"]``.

Kafka and MongoDB are chosen independently, first match wins:

1. ``KAFKA_BOOTSTRAP_SERVERS`` / ``MONGODB_URI`` set: use that server as it is
   (e.g. after ``eval "$(python -m dev.stack env --export)"``).
2. A Docker engine answers: testcontainers with ``apache/kafka`` (KRaft) and ``mongo:8``
   started as a one-member replica set (images overridable with ``KAFKA_IMAGE`` and
   ``MONGO_IMAGE``).
3. Otherwise local processes from ``dev/servers/`` (Apache Kafka from Maven Central,
   SecantusDB) on free ports, data under the session's tmp dir, stopped at session end.

``TEST_SERVERS=local`` skips step 2 (and ``containers`` makes it mandatory), for example
to run crash tests, which need ``kafka_server`` / ``mongo_server``, on a Docker machine.

Fixtures (all session-scoped): ``kafka_bootstrap`` (str), ``mongodb_uri`` (str),
``kafka_server`` / ``mongo_server`` (the local server objects, so a test can ``kill()``
or ``restart()`` them; the test is skipped when the server came from 1 or 2), and
``kafka_endpoint`` / ``mongo_endpoint`` (``Endpoint``: address, origin, local server).
A local server a test leaves stopped or killed is started again after that test.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, Self, TypeVar

import pytest
from pymongo import MongoClient

from dev.servers.common import StackError, free_ports
from dev.servers.kafka import KafkaServer, wait_for_kafka
from dev.servers.mongo import MongoServer, wait_for_mongo
from dev.servers.process import LocalServer

Origin = Literal["env", "container", "local"]


class _Startable(Protocol):
    def start(self) -> Self: ...


# A server or a cluster: anything that starts on ports it picked itself.
Started = TypeVar("Started", bound=_Startable)

KAFKA_IMAGE = "apache/kafka:4.1.1"  # same version as dev/kafka/pom.xml
MONGO_IMAGE = "mongo:8"

# Local servers this session started; the teardown hook restarts any a test left dead.
_LOCAL_SERVERS: list[LocalServer] = []


@dataclass(frozen=True)
class Endpoint:
    """Where a server is and where it came from; ``server`` is set only for local ones."""

    address: str
    origin: Origin
    server: LocalServer | None = None


def _servers_mode() -> str:
    mode = os.environ.get("TEST_SERVERS", "auto").strip().lower() or "auto"
    if mode not in {"auto", "local", "containers"}:
        raise pytest.UsageError(f"TEST_SERVERS must be auto, local or containers, not {mode!r}")
    return mode


@functools.cache
def docker_available() -> bool:
    """True if a Docker engine answers a ping within a few seconds."""
    mode = _servers_mode()
    if mode == "local":
        return False
    try:
        import docker  # noqa: PLC0415 - optional; only the testcontainers path needs it

        client = docker.from_env(timeout=3)
        try:
            answered = bool(client.ping())
        finally:
            client.close()
    except Exception:
        answered = False
    if mode == "containers" and not answered:
        raise pytest.UsageError("TEST_SERVERS=containers but no Docker engine answers")
    return answered


# --------------------------------------------------------------------------- containers


def _start_kafka_container() -> tuple[str, Callable[[], None]]:
    """apache/kafka in KRaft mode, advertised on the host-mapped port.

    The mapped port is only known after the container starts, so the container waits for a
    start script that we copy in afterwards (the approach of testcontainers-java's
    KafkaContainer; testcontainers-python's KafkaContainer only drives Confluent images).
    """
    from testcontainers.core.container import DockerContainer  # noqa: PLC0415

    script, ready = "/tmp/stack_start.sh", "/tmp/stack_start.ready"
    container = (
        DockerContainer(os.environ.get("KAFKA_IMAGE", KAFKA_IMAGE))
        .with_exposed_ports(9092)
        .with_envs(
            CLUSTER_ID="4L6g3nShT-eMCtK--X86sw",
            KAFKA_NODE_ID="1",
            KAFKA_PROCESS_ROLES="broker,controller",
            KAFKA_LISTENERS="PLAINTEXT://:9092,BROKER://:9093,CONTROLLER://:9094",
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP=(
                "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT"
            ),
            KAFKA_INTER_BROKER_LISTENER_NAME="BROKER",
            KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
            KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9094",
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR="1",
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
            KAFKA_NUM_PARTITIONS="3",
            KAFKA_AUTO_CREATE_TOPICS_ENABLE="true",
        )
        .with_command(["sh", "-c", f"while [ ! -f {ready} ]; do sleep 0.1; done; exec {script}"])
    )
    container.start()
    try:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(9092)
        bootstrap = f"{host}:{port}"
        start_script = (
            "#!/bin/bash\n"
            f"export KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://{bootstrap},BROKER://$(hostname):9093\n"
            "exec /etc/kafka/docker/run\n"
        )
        container.copy_into_container(start_script.encode(), script, 0o755)
        # Separate marker copied after the script is closed: exec'ing a file that docker
        # is still writing fails with "Text file busy".
        container.copy_into_container(b"", ready)
        wait_for_kafka(bootstrap, timeout=120)
    except BaseException:
        container.stop()
        raise
    return bootstrap, container.stop


def _start_mongo_container() -> tuple[str, Callable[[], None]]:
    """mongo:8 as a one-member replica set (transactions and change streams need one).

    No root user: with auth on, a replica set also needs a keyFile.
    """
    from testcontainers.core.container import DockerContainer  # noqa: PLC0415

    container = (
        DockerContainer(os.environ.get("MONGO_IMAGE", MONGO_IMAGE))
        .with_exposed_ports(27017)
        .with_command(["--replSet", "rs0", "--bind_ip_all"])
    )
    container.start()
    try:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(27017)
        # directConnection: the member calls itself localhost:27017, unreachable from here.
        uri = f"mongodb://{host}:{port}/?directConnection=true"
        wait_for_mongo(uri, timeout=60, address=(host, port))
        client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=10_000)
        try:
            client.admin.command(
                "replSetInitiate",
                {"_id": "rs0", "members": [{"_id": 0, "host": "localhost:27017"}]},
            )
            deadline = time.monotonic() + 60
            while not client.admin.command("hello").get("isWritablePrimary"):
                if time.monotonic() > deadline:
                    raise StackError("mongo container never became replica-set primary")
                time.sleep(0.2)
        finally:
            client.close()
    except BaseException:
        container.stop()
        raise
    return uri, container.stop


# --------------------------------------------------------------------------- local


def start_local(make: Callable[[], Started], attempts: int = 3) -> Started:
    """Start a server on fresh free ports, retrying if another process grabbed a port."""
    for attempt in range(1, attempts + 1):
        server = make()
        try:
            return server.start()
        except StackError as exc:
            if "already in use" not in str(exc) or attempt == attempts:
                raise
    raise AssertionError("unreachable")


def _local_kafka(tmp_path_factory: pytest.TempPathFactory) -> KafkaServer:
    def make() -> KafkaServer:
        port, controller_port = free_ports(2)
        return KafkaServer(
            tmp_path_factory.mktemp("kafka"),
            port=port,
            controller_port=controller_port,
            die_with_parent=True,
        )

    return start_local(make)


def _local_mongo(tmp_path_factory: pytest.TempPathFactory) -> MongoServer:
    def make() -> MongoServer:
        (port,) = free_ports(1)
        return MongoServer(tmp_path_factory.mktemp("mongo"), port=port, die_with_parent=True)

    return start_local(make)


def _provide(
    env_var: str,
    start_container: Callable[[], tuple[str, Callable[[], None]]],
    start_local: Callable[[], LocalServer],
    address_of: Callable[[LocalServer], str],
) -> Iterator[Endpoint]:
    from_env = os.environ.get(env_var, "").strip()
    if from_env:
        yield Endpoint(from_env, "env")
        return
    if docker_available():
        address, stop = start_container()
        try:
            yield Endpoint(address, "container")
        finally:
            stop()
        return
    server = start_local()
    _LOCAL_SERVERS.append(server)
    try:
        yield Endpoint(address_of(server), "local", server)
    finally:
        _LOCAL_SERVERS.remove(server)  # before stop(), or the teardown hook would revive it
        server.stop()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def kafka_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    def bootstrap(server: LocalServer) -> str:
        assert isinstance(server, KafkaServer)
        return server.bootstrap_servers

    yield from _provide(
        "KAFKA_BOOTSTRAP_SERVERS",
        _start_kafka_container,
        lambda: _local_kafka(tmp_path_factory),
        bootstrap,
    )


@pytest.fixture(scope="session")
def mongo_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    def uri(server: LocalServer) -> str:
        assert isinstance(server, MongoServer)
        return server.uri

    yield from _provide(
        "MONGODB_URI", _start_mongo_container, lambda: _local_mongo(tmp_path_factory), uri
    )


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_endpoint: Endpoint) -> str:
    """``host:port`` of a running Kafka broker."""
    return kafka_endpoint.address


@pytest.fixture(scope="session")
def mongodb_uri(mongo_endpoint: Endpoint) -> str:
    """A MongoDB URI whose server supports transactions (replica-set primary)."""
    return mongo_endpoint.address


@pytest.fixture(scope="session")
def kafka_server(kafka_endpoint: Endpoint) -> KafkaServer:
    """The local KafkaServer behind ``kafka_bootstrap`` (skips if Kafka isn't local)."""
    if not isinstance(kafka_endpoint.server, KafkaServer):
        pytest.skip(_not_local("Kafka", kafka_endpoint, "KAFKA_BOOTSTRAP_SERVERS"))
    return kafka_endpoint.server


@pytest.fixture(scope="session")
def mongo_server(mongo_endpoint: Endpoint) -> MongoServer:
    """The local MongoServer behind ``mongodb_uri`` (skips if MongoDB isn't local)."""
    if not isinstance(mongo_endpoint.server, MongoServer):
        pytest.skip(_not_local("MongoDB", mongo_endpoint, "MONGODB_URI"))
    return mongo_endpoint.server


def _not_local(what: str, endpoint: Endpoint, env_var: str) -> str:
    source = f"${env_var}" if endpoint.origin == "env" else "a Docker container"
    how = f"unset {env_var}" if endpoint.origin == "env" else "set TEST_SERVERS=local"
    return f"needs a local {what} process to kill/restart; {what} came from {source} ({how})"


# --------------------------------------------------------------------------- hooks


def pytest_report_header(config: pytest.Config) -> str:
    chosen = []
    for what, env_var in (("kafka", "KAFKA_BOOTSTRAP_SERVERS"), ("mongo", "MONGODB_URI")):
        chosen.append(f"{what}=${env_var}" if os.environ.get(env_var) else f"{what}=auto")
    return f"servers: {', '.join(chosen)}, TEST_SERVERS={_servers_mode()} (see tests/servers.py)"


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Start again any local server a (crash) test left down, so later tests still work."""
    for server in list(_LOCAL_SERVERS):
        if not server.is_running():
            item.add_report_section(
                "teardown", "servers", f"restarting {server.name}, left down by {item.nodeid}"
            )
            server.start()


def log_paths() -> list[Path]:
    """Log files of the local servers of this session (handy in failure messages)."""
    return [server.log_file for server in _LOCAL_SERVERS]
