"""``KafkaCluster``: a KRaft cluster of three local ``KafkaServer`` nodes from the same jars."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

from dev.servers.common import LOCALHOST, STOP_TIMEOUT, StackError, free_ports
from dev.servers.kafka import KAFKA_READY_TIMEOUT, KafkaServer, new_cluster_id

# What a production cluster of three runs with: every topic, internal ones included, on all
# three nodes, and acks=all writes refused unless two replicas have them.
# What a production cluster of three runs with: every topic, internal ones included, on all
# three nodes, and acks=all writes refused unless two replicas have them.
CLUSTER_PROPERTIES: dict[str, str | int | bool] = {
    "default.replication.factor": 3,
    "min.insync.replicas": 2,
    "offsets.topic.replication.factor": 3,
    "transaction.state.log.replication.factor": 3,
    "transaction.state.log.min.isr": 2,
    "share.coordinator.state.topic.replication.factor": 3,
    "share.coordinator.state.topic.min.isr": 2,
}
DEFAULT_CLUSTER_PORT = 19092  # nodes on 19092, 19093, 19094; their controllers on 19095...


class KafkaCluster:
    """A KRaft cluster of ``size`` nodes (default 3), each broker and controller, same jars.

    Layout under ``data_dir``: ``cluster.id`` and ``node-<id>/`` (each node a `KafkaServer`).
    The controllers form a static quorum, so the nodes are launched together and then
    awaited: a lone node never gets a quorum. ``kill(node_id)`` crashes one node (SIGKILL),
    ``start_node(node_id)`` brings it back; the other nodes go on meanwhile.
    """

    name = "kafka-cluster"

    def __init__(
        self,
        data_dir: Path,
        *,
        size: int = 3,
        host: str = LOCALHOST,
        ports: Sequence[tuple[int, int]] | None = None,
        server_properties: Mapping[str, str | int | bool] | None = None,
        heap_max: str = "512m",
        jvm_args: Sequence[str] = (),
        ready_timeout: float = 2 * KAFKA_READY_TIMEOUT,
        die_with_parent: bool = False,
    ) -> None:
        """``ports``: (client port, controller port) per node; default free ones."""
        self.data_dir = Path(data_dir).resolve()
        if ports is None:
            free = free_ports(2 * size, host)
            ports = list(zip(free[:size], free[size:], strict=True))
        if len(ports) != size:
            raise StackError(f"{size} nodes need {size} port pairs, got {len(ports)}")
        self.host = host
        self.ready_timeout = ready_timeout
        self.startup_seconds: float | None = None
        voters = ",".join(f"{i}@{host}:{c}" for i, (_, c) in enumerate(ports, start=1))
        self.nodes = [
            KafkaServer(
                self.data_dir / f"node-{node_id}",
                host=host,
                port=port,
                controller_port=controller,
                node_id=node_id,
                quorum_voters=voters,
                server_properties={**CLUSTER_PROPERTIES, **(server_properties or {})},
                heap_max=heap_max,
                jvm_args=jvm_args,
                ready_timeout=ready_timeout,
                die_with_parent=die_with_parent,
                probe_produce=False,
            )
            for node_id, (port, controller) in enumerate(ports, start=1)
        ]

    def _cluster_id(self) -> str:
        """The same id for every node, kept in ``cluster.id`` so restarts find their data."""
        path = self.data_dir / "cluster.id"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            cluster_id = new_cluster_id()
            path.write_text(cluster_id + "\n")
            return cluster_id

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes)

    @property
    def port(self) -> int:
        return self.nodes[0].port

    @property
    def pid(self) -> int | None:
        """The first running node's pid (for the CLI), else None."""
        return next((pid for node in self.nodes if (pid := node.pid) is not None), None)

    @property
    def log_file(self) -> Path:
        return self.nodes[0].log_file

    def node(self, node_id: int) -> KafkaServer:
        return self.nodes[node_id - 1]

    def is_running(self) -> bool:
        return any(node.is_running() for node in self.nodes)

    def is_healthy(self, timeout: float = 5.0) -> bool:
        return all(node.is_healthy(timeout) for node in self.nodes)

    def start(self) -> Self:
        """Launch every node not running, then wait for each; on failure stop them all."""
        started = time.monotonic()
        try:
            for node in self.nodes:
                node.cluster_id = self._cluster_id()  # read (or made) only when starting
                if not node.is_running():
                    node.launch()
            self._wait_ready(self.ready_timeout)
        except BaseException:
            self.stop(timeout=5.0)
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _wait_ready(self, timeout: float) -> None:
        for node in self.nodes:
            node.ready_timeout = timeout
            node.wait_ready()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop all nodes at once: one by one, the last ones would wait for a lost quorum."""
        with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as pool:
            for future in [pool.submit(node.stop, timeout) for node in self.nodes]:
                future.result()

    def kill(self, node_id: int) -> None:
        """SIGKILL one node (a crash); the others carry on."""
        self.node(node_id).kill()

    def start_node(self, node_id: int) -> KafkaServer:
        """Start one node again (same ports, same data) and wait until it serves."""
        return self.node(node_id).start()

    async def akill(self, node_id: int) -> None:
        await asyncio.to_thread(self.kill, node_id)

    async def astart_node(self, node_id: int) -> KafkaServer:
        return await asyncio.to_thread(self.start_node, node_id)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
