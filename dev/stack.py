"""Real Apache Kafka (KRaft) and SecantusDB as local processes, without Docker.

Used three ways:

* ``python -m dev.stack up|down|status|env`` for ``make run`` and CI: fixed ports
  (Kafka 9092/9093, MongoDB 27017), state under ``<repo>/.cache/stack/``;
  ``up kafka-cluster`` adds a three-node cluster (19092-19094, ``env --cluster``).
* ``KafkaServer`` / ``MongoServer`` / ``KafkaCluster`` objects from test fixtures
  (``tests/servers.py``): free ports, data in a pytest tmp dir, ``kill()``/``restart()`` for
  crash tests. ``KafkaServer(auth=KafkaAuth(...))`` adds SASL/SCRAM users and KRaft's
  ``StandardAuthorizer``; ``grant_acls()`` grants them rights.
* ``ensure_kafka_jars()``, ``wait_for_kafka()``, ``wait_for_mongo()`` as building blocks.

Kafka comes from Maven Central (``dev/kafka/pom.xml``) and runs as ``java kafka.Kafka``;
SecantusDB is a MongoDB wire-protocol server on WiredTiger from PyPI (``secantusd-py``).
Only the standard library plus pymongo and aiokafka (for readiness checks) are used.
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import ctypes
import fcntl
import hashlib
import json
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import MongoClient
from pymongo.uri_parser import parse_uri

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO_ROOT / ".cache"
KAFKA_POM = REPO_ROOT / "dev" / "kafka" / "pom.xml"
KAFKA_LOG4J2_CONFIG = REPO_ROOT / "dev" / "kafka" / "log4j2.properties"
KAFKA_LIB_DIR = CACHE_DIR / "kafka" / "lib"
STACK_DIR = CACHE_DIR / "stack"

LOCALHOST = "127.0.0.1"
DEFAULT_KAFKA_PORT = 9092
DEFAULT_KAFKA_CONTROLLER_PORT = 9093
DEFAULT_MONGO_PORT = 27017

KAFKA_READY_TIMEOUT = 60.0
MONGO_READY_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0

# Written by the Kafka readiness probe; a real produce proves partitions have a leader.
KAFKA_PROBE_TOPIC = "_stack_readiness_probe"

_RESOLVED_MARKER = ".resolved"

T = TypeVar("T")


class StackError(RuntimeError):
    """A local server could not be prepared, started, reached or stopped."""


# --------------------------------------------------------------------------- ports


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port free right now; another process may take it before use, so retry on clash."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = LOCALHOST) -> list[int]:
    """Return ``count`` distinct free ports; all sockets stay bound until all are picked."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _port_bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option the servers use, so TIME_WAIT leftovers of a previous run do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


# --------------------------------------------------------------------------- executables


def find_java() -> str:
    """``$JAVA_HOME/bin/java`` if set, else ``java`` on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise StackError("java not found: install a JDK/JRE 17+ or set JAVA_HOME")
    return found


def find_maven() -> str:
    found = shutil.which("mvn")
    if found is None:
        raise StackError("mvn not found: Maven 3.8+ is needed once to fetch the Kafka jars")
    return found


def find_secantusd() -> str:
    """The venv's ``secantusd-py`` (next to sys.executable) first, then PATH."""
    # Not resolving symlinks: a venv's python is usually a symlink out of the venv.
    candidate = Path(sys.executable).parent / "secantusd-py"
    if os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("secantusd-py")
    if found is None:
        raise StackError(
            "secantusd-py not found next to the Python interpreter or on PATH: "
            "pip install 'SecantusDB==0.7.0b3' (the project's [local] extra)"
        )
    return found


# --------------------------------------------------------------------------- Kafka jars


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive inter-process lock, so parallel `make` targets don't resolve twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def kafka_jars_ready(lib_dir: Path = KAFKA_LIB_DIR, pom: Path = KAFKA_POM) -> bool:
    marker = lib_dir / _RESOLVED_MARKER
    try:
        return marker.read_text().strip() == _file_digest(pom)
    except FileNotFoundError:
        return False


def ensure_kafka_jars(
    lib_dir: Path = KAFKA_LIB_DIR,
    pom: Path = KAFKA_POM,
    *,
    force: bool = False,
    expect: str = "kafka_*.jar",
) -> Path:
    """Copy Kafka's runtime jars into ``lib_dir`` with Maven unless they are already there.

    Works for any pom's runtime set (e.g. the CloudEvents Java SDK's): ``expect`` is a glob
    that must match a resolved jar, or the resolve counts as failed.

    A marker file holds the sha256 of pom.xml, so editing the pom (e.g. a Kafka upgrade)
    re-resolves. The new set is built in a sibling directory and swapped in, so a failed or
    interrupted resolve never leaves a half-filled classpath, nor two Kafka versions on it.
    """
    if not force and kafka_jars_ready(lib_dir, pom):
        return lib_dir
    with _file_lock(lib_dir.parent / ".resolve.lock"):
        if not force and kafka_jars_ready(lib_dir, pom):
            return lib_dir  # another process resolved them while we waited for the lock
        digest = _file_digest(pom)
        staging = lib_dir.parent / f".{lib_dir.name}.staging-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [
            find_maven(),
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not any(staging.glob(expect)):
            shutil.rmtree(staging, ignore_errors=True)
            output = (result.stdout + result.stderr).strip()[-4000:]
            raise StackError(
                f"resolving Kafka jars failed (exit {result.returncode}): {' '.join(cmd)}\n{output}"
            )
        (staging / _RESOLVED_MARKER).write_text(digest + "\n")
        shutil.rmtree(lib_dir, ignore_errors=True)
        staging.rename(lib_dir)
    return lib_dir


# --------------------------------------------------------------------------- readiness


def _run_coroutine(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even if this thread runs an event loop.

    The servers' sync API is also called from async tests (session event loop), where
    asyncio.run() is not allowed; there the coroutine gets a private loop in a helper thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="stack-probe") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


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


def probe_mongo(uri: str, timeout: float = 5.0) -> None:
    """Raise unless the server answers ``ping``."""
    timeout_ms = max(200, int(timeout * 1000))
    client: MongoClient[dict[str, Any]] = MongoClient(
        uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
    )
    try:
        client.admin.command("ping")
    finally:
        client.close()


def _wait_until(
    what: str,
    check: Callable[[float], None],
    *,
    address: tuple[str, int],
    timeout: float,
    is_alive: Callable[[], bool] | None,
    attempt_timeout: float,
) -> None:
    """Wait for the TCP port, then retry ``check`` until it passes or ``timeout`` expires."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        if is_alive is not None and not is_alive():
            raise StackError(f"{what} exited during start-up")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            detail = f": {last_error!r}" if last_error else " (port never opened)"
            raise StackError(f"{what} not ready after {timeout:.0f}s{detail}")
        if not port_open(*address, timeout=min(0.5, remaining)):
            time.sleep(0.05)
            continue
        try:
            check(min(attempt_timeout, remaining))
        except Exception as exc:
            last_error = exc
            time.sleep(0.2)
        else:
            return


def wait_for_kafka(
    bootstrap: str,
    timeout: float = KAFKA_READY_TIMEOUT,
    *,
    is_alive: Callable[[], bool] | None = None,
    produce: bool = True,
) -> None:
    """Block until ``probe_kafka`` passes against ``bootstrap`` (TCP port first, it's cheap)."""

    def check(attempt_timeout: float) -> None:
        _run_coroutine(lambda: probe_kafka(bootstrap, attempt_timeout, produce=produce))

    _wait_until(
        f"Kafka at {bootstrap}",
        check,
        address=_first_address(bootstrap),
        timeout=timeout,
        is_alive=is_alive,
        attempt_timeout=15.0,
    )


def wait_for_mongo(
    uri: str,
    timeout: float = MONGO_READY_TIMEOUT,
    *,
    address: tuple[str, int] | None = None,
    is_alive: Callable[[], bool] | None = None,
) -> None:
    """Block until the server behind ``uri`` answers ``ping``."""
    if address is None:
        address = parse_uri(uri)["nodelist"][0]
    _wait_until(
        f"MongoDB at {uri}",
        lambda attempt_timeout: probe_mongo(uri, attempt_timeout),
        address=address,
        timeout=timeout,
        is_alive=is_alive,
        attempt_timeout=5.0,
    )


# --------------------------------------------------------------------------- processes


def _process_cmdline(pid: int) -> str | None:
    """The command line of a live process, or None if it's gone (or a zombie)."""
    proc = Path("/proc")
    if proc.is_dir():
        try:
            raw = (proc / str(pid) / "cmdline").read_bytes()
        except OSError:
            return None
        return raw.replace(b"\0", b" ").decode(errors="replace").strip() or None
    result = subprocess.run(  # macOS and other /proc-less systems
        ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or None


class _TetheredSpawner:
    """Starts children that Linux SIGKILLs if this process dies (PR_SET_PDEATHSIG).

    Keeps a SIGKILLed or os._exit()ed pytest from leaving 1 GB brokers behind. Linux sends
    that signal when the *thread* that forked exits, not the process, so all tethered
    children are forked by one daemon thread that lives as long as the process; that way
    ``await server.arestart()`` from a worker thread is tethered too.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[
            tuple[Callable[[], subprocess.Popen[bytes]], concurrent.futures.Future[Any]]
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._prctl: Any = None
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, AttributeError):
                # Looked up here, not in the child: no dlopen between fork and exec.
                self._prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec(self) -> Callable[[], None] | None:
        prctl = self._prctl
        if prctl is None:
            return None
        parent = os.getpid()
        pr_set_pdeathsig = 1

        def preexec() -> None:
            prctl(pr_set_pdeathsig, signal.SIGKILL)
            if os.getppid() != parent:  # we died before prctl took effect
                os._exit(1)

        return preexec

    def spawn(self, start: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="dev-stack-spawner", daemon=True
                )
                self._thread.start()
        future: concurrent.futures.Future[subprocess.Popen[bytes]] = concurrent.futures.Future()
        self._jobs.put((start, future))
        return future.result()

    def _run(self) -> None:
        while True:
            start, future = self._jobs.get()
            try:
                future.set_result(start())
            except BaseException as exc:
                future.set_exception(exc)


_SPAWNER = _TetheredSpawner()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the server's process group (it leads its own session), else just the pid."""
    with contextlib.suppress(ProcessLookupError):
        try:
            pgid = os.getpgid(pid)
        except ProcessLookupError:
            return
        if pgid == pid:
            os.killpg(pgid, sig)
        else:
            os.kill(pid, sig)


class LocalServer(abc.ABC):
    """A server run as a child process in its own session, with a pid file and a log file.

    Subclasses supply the command line, preparation (config files, formatting) and the
    readiness check. ``stop()``/``status`` also work on a server started by another
    process (the CLI's ``up``), found through the pid file.
    """

    name = "server"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        data_dir: Path,
        log_file: Path,
        pid_file: Path,
        ready_timeout: float,
        die_with_parent: bool,
    ) -> None:
        self.host = host
        self.port = port
        self.data_dir = Path(data_dir).resolve()
        self.log_file = Path(log_file).resolve()
        self.pid_file = Path(pid_file).resolve()
        self.ready_timeout = ready_timeout
        self.die_with_parent = die_with_parent
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.RLock()
        self.startup_seconds: float | None = None  # of the last start(), for reports
        self._launched_at = 0.0

    # -- to override ------------------------------------------------------------------

    @abc.abstractmethod
    def _command(self) -> list[str]:
        raise NotImplementedError

    @abc.abstractmethod
    def _prepare(self) -> None:
        """Create dirs and config before each start (must keep existing data)."""

    def _ports(self) -> list[int]:
        return [self.port]

    @abc.abstractmethod
    def _identity_marker(self) -> str:
        """A string found in our own process' command line, to reject recycled pids."""
        raise NotImplementedError

    @abc.abstractmethod
    def _wait_ready(self, timeout: float) -> None:
        raise NotImplementedError

    @abc.abstractmethod
    def is_healthy(self, timeout: float = 5.0) -> bool:
        raise NotImplementedError

    # -- state ------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """Pid of the running server (ours or adopted from the pid file), else None."""
        if self._proc is not None:
            return self._proc.pid if self._proc.poll() is None else None
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        cmdline = _process_cmdline(pid)
        if cmdline is None or self._identity_marker() not in cmdline:
            return None
        return pid

    def is_running(self) -> bool:
        return self.pid is not None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log file)"
        return "\n".join(text.splitlines()[-lines:])

    def _alive(self) -> bool:
        # Not just our child: the CLI also waits on servers adopted from a pid file.
        return self.is_running()

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> Self:
        """Start the process and block until it is ready; raises StackError with the log tail."""
        with self._lock:
            self.launch()
            return self.wait_ready()

    def launch(self) -> None:
        """Spawn the process without waiting for it (``wait_ready`` does).

        Servers that are only ready together (a KRaft quorum) are all launched, then awaited.
        """
        with self._lock:
            if self.is_running():
                raise StackError(f"{self.name} already running (pid {self.pid})")
            busy = [p for p in self._ports() if not _port_bindable(self.host, p)]
            if busy:
                raise StackError(
                    f"{self.name}: port(s) {busy} on {self.host} already in use by another process"
                )
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self.pid_file.parent.mkdir(parents=True, exist_ok=True)
            self._prepare()
            command = self._command()
            self._launched_at = time.monotonic()
            with self.log_file.open("ab") as log:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S")
                log.write(f"\n=== dev.stack: starting {self.name} at {stamp} ===\n".encode())
                log.flush()

                def popen(preexec: Callable[[], None] | None = None) -> subprocess.Popen[bytes]:
                    return subprocess.Popen(
                        command,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        cwd=self.data_dir,
                        # Own session: Ctrl-C in a terminal or `make` must not hit the server,
                        # and stop() can signal the whole group.
                        start_new_session=True,
                        preexec_fn=preexec,  # noqa: PLW1509 - only sets PDEATHSIG, async-safe
                    )

                if self.die_with_parent:
                    self._proc = _SPAWNER.spawn(lambda: popen(_SPAWNER.preexec()))
                else:
                    self._proc = popen()
            self.pid_file.write_text(f"{self._proc.pid}\n")

    def wait_ready(self) -> Self:
        """Block until the launched process is ready; on failure kill it, raise StackError."""
        with self._lock:
            try:
                self._wait_ready(self.ready_timeout)
            except BaseException as exc:
                self._terminate(signal.SIGKILL, 5.0)  # no half-started server left behind
                if not isinstance(exc, Exception):
                    raise  # KeyboardInterrupt and friends stay what they are
                raise StackError(
                    f"{self.name} failed to start ({exc}); log {self.log_file}:\n{self.log_tail()}"
                ) from exc
            self.startup_seconds = time.monotonic() - self._launched_at
            return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL. No-op if not running."""
        with self._lock:
            self._terminate(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL without any shutdown: simulates a crash (data dir left as is)."""
        with self._lock:
            self._terminate(signal.SIGKILL, 10.0)

    def restart(self) -> Self:
        """Stop (gracefully) and start again on the same ports with the same data."""
        with self._lock:
            self.stop()
            return self.start()

    def _terminate(self, sig: signal.Signals, timeout: float) -> None:
        pid = self.pid
        if pid is not None:
            _signal_group(pid, sig)
            if not self._wait_exit(pid, timeout) and sig != signal.SIGKILL:
                _signal_group(pid, signal.SIGKILL)
                self._wait_exit(pid, 10.0)
        self._proc = None
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout)  # reaps our child, so no zombie lingers
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _process_cmdline(pid) is None:
                return True
            time.sleep(0.1)
        return _process_cmdline(pid) is None

    # Async variants for async tests: run the blocking call off the event loop.
    async def astart(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def astop(self, timeout: float = STOP_TIMEOUT) -> None:
        await asyncio.to_thread(self.stop, timeout)

    async def akill(self) -> None:
        await asyncio.to_thread(self.kill)

    async def arestart(self) -> Self:
        return await asyncio.to_thread(self.restart)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- Kafka


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


def run_java(command: list[str], what: str) -> str:
    """Run one of Kafka's Java tools to completion; its stdout, or StackError with its output."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise StackError(
            f"{what} failed (exit {result.returncode}):\n"
            f"{(result.stdout + result.stderr).strip()[-4000:]}"
        )
    return result.stdout


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
        lines = ["# Written by dev/stack.py on every start; edits here are overwritten."]
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
            _run_coroutine(lambda: probe_kafka(self.bootstrap_servers, timeout, produce=False))
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


# --------------------------------------------------------------------------- Kafka cluster

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


# --------------------------------------------------------------------------- SecantusDB


class MongoServer(LocalServer):
    """SecantusDB (``secantusd-py``), a MongoDB wire-protocol server on WiredTiger.

    Layout under ``data_dir``: ``db/`` (WiredTiger home), ``secantusd.toml`` (empty, passed
    with --config so a stray ./ or ~/.secantus/secantusd.toml can't change the server),
    ``secantusd.log`` and ``secantusd.pid``.

    ``sync_on_commit`` fsyncs the WiredTiger log at every commit, so acknowledged writes
    survive ``kill()`` (SIGKILL) and power loss, not only a clean stop.
    """

    name = "mongo"

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = LOCALHOST,
        port: int = DEFAULT_MONGO_PORT,
        log_file: Path | None = None,
        pid_file: Path | None = None,
        sync_on_commit: bool = True,
        log_level: str = "INFO",
        extra_args: Sequence[str] = (),
        executable: str | None = None,
        ready_timeout: float = MONGO_READY_TIMEOUT,
        die_with_parent: bool = False,
    ) -> None:
        data_dir = Path(data_dir)
        super().__init__(
            host=host,
            port=port,
            data_dir=data_dir,
            log_file=log_file or data_dir / "secantusd.log",
            pid_file=pid_file or data_dir / "secantusd.pid",
            ready_timeout=ready_timeout,
            die_with_parent=die_with_parent,
        )
        self.sync_on_commit = sync_on_commit
        self.log_level = log_level
        self.extra_args = tuple(extra_args)
        self.executable = executable

    @property
    def uri(self) -> str:
        # directConnection: SecantusDB advertises a one-member replica set named "secantus";
        # direct mode keeps drivers on this address whatever host list it reports.
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"

    @property
    def storage_path(self) -> Path:
        return self.data_dir / "db"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "secantusd.toml"

    def _identity_marker(self) -> str:
        return str(self.storage_path)

    def _prepare(self) -> None:
        self.storage_path.mkdir(parents=True, exist_ok=True)
        if not self.config_file.exists():
            self.config_file.write_text(
                "# Empty on purpose: dev/stack.py passes every setting as a flag.\n"
            )

    def _command(self) -> list[str]:
        command = [
            self.executable or find_secantusd(),
            "--config",
            str(self.config_file),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--storage-path",
            str(self.storage_path),
            "--log-level",
            self.log_level,
        ]
        if self.sync_on_commit:
            command.append("--sync-on-commit")
        return [*command, *self.extra_args]

    def _wait_ready(self, timeout: float) -> None:
        wait_for_mongo(self.uri, timeout, address=(self.host, self.port), is_alive=self._alive)

    def is_healthy(self, timeout: float = 5.0) -> bool:
        if not self.is_running():
            return False
        try:
            probe_mongo(self.uri, timeout)
        except Exception:
            return False
        return True


# --------------------------------------------------------------------------- CLI

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
    with _file_lock(state_dir / ".lock"):
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
    with _file_lock(state_dir / ".lock"):
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
