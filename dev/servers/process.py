"""``LocalServer``: a server run as a child process, found again through its pid file."""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import contextlib
import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from dev.servers.common import STOP_TIMEOUT, StackError, port_bindable


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


SPAWNER = _TetheredSpawner()


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
            busy = [p for p in self._ports() if not port_bindable(self.host, p)]
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
                    self._proc = SPAWNER.spawn(lambda: popen(SPAWNER.preexec()))
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
