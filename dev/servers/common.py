"""What every local server shares: paths, free ports, a file lock, waiting until it serves."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import socket
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
CACHE_DIR = REPO_ROOT / ".cache"

LOCALHOST = "127.0.0.1"
STOP_TIMEOUT = 20.0

T = TypeVar("T")


class StackError(RuntimeError):
    """A local server could not be prepared, started, reached or stopped."""


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


def port_bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option the servers use, so TIME_WAIT leftovers of a previous run do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive inter-process lock, so parallel `make` targets don't resolve twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_coroutine(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
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


def wait_until(
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
