"""SecantusDB as a local process: ``MongoServer``, a MongoDB wire-protocol server on
WiredTiger from PyPI (``secantusd-py``).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from pymongo.uri_parser import parse_uri

from dev.servers.common import LOCALHOST, StackError, wait_until
from dev.servers.process import LocalServer

DEFAULT_MONGO_PORT = 27017
MONGO_READY_TIMEOUT = 30.0


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
    wait_until(
        f"MongoDB at {uri}",
        lambda attempt_timeout: probe_mongo(uri, attempt_timeout),
        address=address,
        timeout=timeout,
        is_alive=is_alive,
        attempt_timeout=5.0,
    )


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
                "# Empty on purpose: dev/servers/mongo.py passes every setting as a flag.\n"
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
