"""Apache Kafka 4.x in KRaft mode as a local process: ``KafkaServer``, one node acting as
broker and controller, with SASL/SCRAM users (``KafkaAuth``), extra listeners
(``KafkaListener``, e.g. SSL) and ACLs (``grant_acls``) for the security tests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from dev.servers.common import LOCALHOST, REPO_ROOT, StackError, run_coroutine, wait_until
from dev.servers.jvm import KAFKA_LIB_DIR, ensure_kafka_jars, find_java, run_java
from dev.servers.process import LocalServer

KAFKA_LOG4J2_CONFIG = REPO_ROOT / "dev" / "kafka" / "log4j2.properties"
DEFAULT_KAFKA_PORT = 9092
DEFAULT_KAFKA_CONTROLLER_PORT = 9093
KAFKA_READY_TIMEOUT = 60.0

# Written by the Kafka readiness probe; a real produce proves partitions have a leader.
KAFKA_PROBE_TOPIC = "_stack_readiness_probe"


def _first_address(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",", maxsplit=1)[0].strip()
    first = first.split("://", 1)[-1]
    host, _, port = first.rpartition(":")
    return host.strip("[]") or LOCALHOST, int(port)


async def probe_kafka(bootstrap: str, budget: float = 10.0, *, produce: bool = True) -> None:
    """Raise unless, within ``budget`` s, the broker answers and the controller creates a topic.

    With ``produce`` a message is also written (acks=all) to a one-partition probe topic,
    which proves the partition got a leader and the log accepts writes.
    """
    request_timeout_ms = max(1000, int(budget * 1000))
    async with asyncio.timeout(budget):
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=request_timeout_ms
        )
        try:
            await admin.start()
            response = await admin.create_topics([NewTopic(KAFKA_PROBE_TOPIC, 1, 1)])
            for entry in response.topic_errors:
                # 36 = TOPIC_ALREADY_EXISTS: fine, a previous probe made it.
                if entry[1] not in (0, 36):
                    raise StackError(f"creating probe topic failed: {tuple(entry)!r}")
        finally:
            await admin.close()
        if not produce:
            return
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", request_timeout_ms=request_timeout_ms
        )
        try:
            await producer.start()
            await producer.send_and_wait(KAFKA_PROBE_TOPIC, b"ready")
        finally:
            await producer.stop()


def wait_for_kafka(
    bootstrap: str,
    timeout: float = KAFKA_READY_TIMEOUT,
    *,
    is_alive: Callable[[], bool] | None = None,
    produce: bool = True,
) -> None:
    """Block until ``probe_kafka`` passes against ``bootstrap`` (TCP port first, it's cheap)."""

    def check(attempt_timeout: float) -> None:
        run_coroutine(lambda: probe_kafka(bootstrap, attempt_timeout, produce=produce))

    wait_until(
        f"Kafka at {bootstrap}",
        check,
        address=_first_address(bootstrap),
        timeout=timeout,
        is_alive=is_alive,
        attempt_timeout=15.0,
    )


@dataclass(frozen=True)
class KafkaListener:
    """An extra broker listener, e.g. ``KafkaListener("SASL", port, "SASL_PLAINTEXT")``.

    ``name`` is the listener name used in ``listeners`` and in per-listener settings
    (``listener.name.<name lower>.…``); ``protocol`` its security protocol.
    """

    name: str
    port: int
    protocol: str = "PLAINTEXT"
    advertised_host: str | None = None


def _escape_property(text: str, *, key: bool = False) -> str:
    """Escape for java.util.Properties (read as ISO-8859-1, backslash escapes)."""
    out = []
    for index, char in enumerate(text):
        code = ord(char)
        if char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif (key and char in " =:#!") or (char == " " and index == 0):
            out.append("\\" + char)
        elif code < 0x20 or code > 0x7E:
            encoded = char.encode("utf-16-be")
            out.extend(
                f"\\u{int.from_bytes(encoded[i : i + 2], 'big'):04x}"
                for i in range(0, len(encoded), 2)
            )
        else:
            out.append(char)
    return "".join(out)


def _property_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (as Kafka's Uuid).

    Like Kafka's `Uuid.randomUuid`, never one starting with `-`: the storage tool's argument
    parser would read it as an option (one format in 64 failed with "expected one argument").
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
SCRAM_LOGIN_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


@dataclass(frozen=True)
class KafkaAuth:
    """SASL/SCRAM users on an extra ``SASL`` listener, and KRaft's ``StandardAuthorizer``.

    ``users`` (name -> password) are created when the storage is formatted; ``super_users``
    may do anything, everyone else only what ACLs grant (nothing without one). The PLAINTEXT
    listeners (controller, between brokers, readiness probes, test harness) carry no identity:
    their principal, ``User:ANONYMOUS``, is a super user too, so keep them on loopback.
    """

    sasl_port: int
    users: Mapping[str, str]
    super_users: Sequence[str] = ("admin",)
    mechanism: str = "SCRAM-SHA-256"
    authorizer: bool = True

    @property
    def listener(self) -> KafkaListener:
        return KafkaListener("SASL", self.sasl_port, "SASL_PLAINTEXT")

    def properties(self) -> dict[str, str | int | bool]:
        props: dict[str, str | int | bool] = {
            "sasl.enabled.mechanisms": self.mechanism,
            "listener.name.sasl.sasl.enabled.mechanisms": self.mechanism,
            f"listener.name.sasl.{self.mechanism.lower()}.sasl.jaas.config": SCRAM_LOGIN_MODULE,
        }
        if self.authorizer:
            principals = [f"User:{name}" for name in (*self.super_users, "ANONYMOUS")]
            props |= {
                "authorizer.class.name": STANDARD_AUTHORIZER,
                "super.users": ";".join(principals),
                "allow.everyone.if.no.acl.found": False,
            }
        return props

    def format_args(self) -> list[str]:
        args: list[str] = []
        for name, password in self.users.items():
            args += ["--add-scram", f"{self.mechanism}=[name={name},password={password}]"]
        return args


class KafkaServer(LocalServer):
    """Apache Kafka 4.x in KRaft mode: a node acting as broker and controller (alone, or one
    node of a ``KafkaCluster``: ``node_id``, ``cluster_id``, ``quorum_voters``).

    Layout under ``data_dir``: ``server.properties``, ``kafka-logs/`` (log.dirs),
    ``kafka.log`` and ``kafka.pid`` unless given elsewhere. Storage is formatted only when
    ``kafka-logs/meta.properties`` is missing, so restarts keep topics and offsets (and
    ``format_args``, e.g. ``--add-scram``, only apply to that first format).

    ``server_properties`` override the defaults of ``properties()``; ``extra_listeners``
    add e.g. SASL_PLAINTEXT or SSL listeners beside PLAINTEXT, which readiness checks use.
    """

    name = "kafka"

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = LOCALHOST,
        port: int = DEFAULT_KAFKA_PORT,
        controller_port: int = DEFAULT_KAFKA_CONTROLLER_PORT,
        log_file: Path | None = None,
        pid_file: Path | None = None,
        server_properties: Mapping[str, str | int | bool] | None = None,
        extra_listeners: Sequence[KafkaListener] = (),
        format_args: Sequence[str] = (),
        lib_dir: Path = KAFKA_LIB_DIR,
        heap_max: str = "1g",
        jvm_args: Sequence[str] = (),
        ready_timeout: float = KAFKA_READY_TIMEOUT,
        die_with_parent: bool = False,
        auth: KafkaAuth | None = None,
        node_id: int = 1,
        cluster_id: str | None = None,
        quorum_voters: str | None = None,
        probe_produce: bool = True,
    ) -> None:
        data_dir = Path(data_dir)
        super().__init__(
            host=host,
            port=port,
            data_dir=data_dir,
            log_file=log_file or data_dir / "kafka.log",
            pid_file=pid_file or data_dir / "kafka.pid",
            ready_timeout=ready_timeout,
            die_with_parent=die_with_parent,
        )
        self.controller_port = controller_port
        self.server_properties = dict(server_properties or {})
        self.extra_listeners = tuple(extra_listeners)
        self.format_args = tuple(format_args)  # e.g. ("--add-scram", "SCRAM-SHA-256=[...]")
        self.auth = auth
        if auth is not None:
            self.extra_listeners += (auth.listener,)
            self.server_properties = {**auth.properties(), **self.server_properties}
            self.format_args += tuple(auth.format_args())
        self.node_id = node_id
        self.cluster_id = cluster_id  # None: a random one at the first format
        # None: a quorum of this node alone. Static voters, so `format` needs no
        # --standalone/--initial-controllers, also for a multi-node quorum.
        self.quorum_voters = quorum_voters or f"{node_id}@{host}:{controller_port}"
        # A cluster node's probe does not produce: the probe topic (one replica) may live
        # on a node that is down, and readiness of this one must not depend on it.
        self.probe_produce = probe_produce
        self.lib_dir = Path(lib_dir)
        self.heap_max = heap_max
        self.jvm_args = tuple(jvm_args)

    @property
    def bootstrap_servers(self) -> str:
        """The PLAINTEXT listener, ``127.0.0.1:<port>``."""
        return f"{self.host}:{self.port}"

    def listener_address(self, name: str) -> str:
        """``host:port`` of an extra listener by name."""
        for listener in self.extra_listeners:
            if listener.name == name:
                return f"{listener.advertised_host or self.host}:{listener.port}"
        raise KeyError(name)

    @property
    def config_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_dirs(self) -> Path:
        return self.data_dir / "kafka-logs"

    @property
    def is_formatted(self) -> bool:
        return (self.log_dirs / "meta.properties").exists()

    def properties(self) -> dict[str, str]:
        """The full server.properties content (defaults, then ``server_properties``)."""
        listeners = [
            f"PLAINTEXT://{self.host}:{self.port}",
            f"CONTROLLER://{self.host}:{self.controller_port}",
        ]
        advertised = [f"PLAINTEXT://{self.host}:{self.port}"]
        protocols = ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT"]
        for listener in self.extra_listeners:
            listeners.append(f"{listener.name}://{self.host}:{listener.port}")
            advertised.append(
                f"{listener.name}://{listener.advertised_host or self.host}:{listener.port}"
            )
            protocols.append(f"{listener.name}:{listener.protocol}")
        props: dict[str, str | int | bool] = {
            "process.roles": "broker,controller",
            "node.id": self.node_id,
            "controller.quorum.voters": self.quorum_voters,
            "listeners": ",".join(listeners),
            "advertised.listeners": ",".join(advertised),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": ",".join(protocols),
            "log.dirs": str(self.log_dirs),
            "offsets.topic.replication.factor": 1,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            # Kafka 4's defaults are 3/2 for share groups' state topic: unusable on one node.
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            "group.initial.rebalance.delay.ms": 0,
            "num.partitions": 3,
            "auto.create.topics.enable": True,
        }
        props.update(self.server_properties)
        return {key: _property_value(value) for key, value in props.items()}

    def _ports(self) -> list[int]:
        return [self.port, self.controller_port, *(lst.port for lst in self.extra_listeners)]

    def _identity_marker(self) -> str:
        return str(self.config_file)

    def _java_base(self) -> list[str]:
        return [
            find_java(),
            f"-Dlog4j2.configurationFile={KAFKA_LOG4J2_CONFIG}",
            "-cp",
            f"{self.lib_dir}/*",  # java expands the wildcard itself; no shell involved
        ]

    def _write_config(self) -> None:
        lines = ["# Written by dev/servers/kafka.py on every start; edits here are overwritten."]
        lines += [
            f"{_escape_property(k, key=True)}={_escape_property(v)}"
            for k, v in self.properties().items()
        ]
        self.config_file.write_text("\n".join(lines) + "\n", encoding="latin-1")

    def _run_tool(self, *args: str) -> str:
        command = [*self._java_base(), "kafka.tools.StorageTool", *args]
        return run_java(command, f"kafka.tools.StorageTool {args[0]}")

    def _format_storage(self) -> None:
        cluster_id = self.cluster_id or new_cluster_id()
        self._run_tool("format", "-t", cluster_id, "-c", str(self.config_file), *self.format_args)

    def _prepare(self) -> None:
        ensure_kafka_jars(self.lib_dir)
        self._write_config()
        if not self.is_formatted:
            self._format_storage()

    def _command(self) -> list[str]:
        java, log4j, cp_flag, classpath = self._java_base()
        return [
            java,
            "-Xms256m",
            f"-Xmx{self.heap_max}",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            # Kafka has its own shutdown hook; log4j's would race it and print a WARN.
            "-Dlog4j2.shutdownHookEnabled=false",
            log4j,
            *self.jvm_args,
            cp_flag,
            classpath,
            "kafka.Kafka",
            str(self.config_file),
        ]

    def _wait_ready(self, timeout: float) -> None:
        wait_for_kafka(
            self.bootstrap_servers, timeout, is_alive=self._alive, produce=self.probe_produce
        )

    def is_healthy(self, timeout: float = 5.0) -> bool:
        if not self.is_running():
            return False
        try:
            run_coroutine(lambda: probe_kafka(self.bootstrap_servers, timeout, produce=False))
        except Exception:
            return False
        return True


KAFKA_ACLS_TOOL = REPO_ROOT / "dev" / "kafka" / "KafkaAcls.java"


def grant_acls(
    bootstrap: str,
    principal: str,
    grants: Sequence[str],
    *,
    client_properties: Mapping[str, str] | None = None,
    lib_dir: Path = KAFKA_LIB_DIR,
) -> list[str]:
    """Allow ``principal`` (e.g. ``User:ledger``) what ``grants`` say, with Kafka's Admin API.

    A grant is ``TOPIC|GROUP|CLUSTER:<name>:<OP>[,<OP>...]`` (literal names). The caller
    connects as a super user: ``client_properties`` are its Admin client settings (SASL...).
    Returns the ACLs in force afterwards, one a line (Kafka's ``AclBinding`` text).
    """
    ensure_kafka_jars(lib_dir)
    with contextlib.ExitStack() as stack:
        config = "-"
        if client_properties:
            handle = stack.enter_context(
                tempfile.NamedTemporaryFile("w", suffix=".properties", encoding="latin-1")
            )
            handle.write(
                "".join(
                    f"{_escape_property(k, key=True)}={_escape_property(v)}\n"
                    for k, v in client_properties.items()
                )
            )
            handle.flush()
            config = handle.name
        output = run_java(
            [
                *(find_java(), "-cp", f"{lib_dir}/*", str(KAFKA_ACLS_TOOL), bootstrap, config),
                *(principal, *grants),
            ],
            "granting ACLs",
        )
    return [line for line in output.splitlines() if line.startswith("(pattern=")]
