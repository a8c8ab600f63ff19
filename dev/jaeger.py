"""A local Jaeger (v2, all-in-one) for `make run TRACING=1` and the tracing tests.

The binary is built from the Go module proxy into .cache/tools by `make jaeger` (built once;
this module runs that target when the binary is missing), and run with dev/jaeger.yaml:
traces in memory, an OTLP/HTTP receiver and the query API on free loopback ports.

    python -m dev.jaeger            # run it in the foreground, print its addresses
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
JAEGER_VERSION = "v1.75.0"  # the module's version; the binary calls itself Jaeger v2
BINARY = REPO / ".cache" / "tools" / "bin" / f"jaeger-{JAEGER_VERSION}"
CONFIG = REPO / "dev" / "jaeger.yaml"
# What the query endpoint serves as its UI (see dev/jaeger_ui/index.html for why not jaeger-ui).
UI_ASSETS = REPO / "dev" / "jaeger_ui"
HOST = "127.0.0.1"
READY_TIMEOUT = 60.0


def binary() -> Path:
    """The Jaeger binary, built first when missing (minutes, once: Go builds the collector)."""
    if not BINARY.exists():
        subprocess.run(["make", "--no-print-directory", "jaeger"], cwd=REPO, check=True)
    return BINARY


def _free_ports(count: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((HOST, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


class Jaeger:
    """One Jaeger process on free ports; a context manager that stops it on exit."""

    def __init__(self, ui_assets: Path | None = None, log: Path | None = None) -> None:
        """`ui_assets`: a built jaeger-ui, when you have one; else the small trace view."""
        self.ui_assets = ui_assets
        self.log_path = log
        self.otlp_port, self.query_port, self.grpc_port, self.health_port = _free_ports(4)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def otlp_endpoint(self) -> str:
        """For OTEL_EXPORTER_OTLP_ENDPOINT (OTLP over HTTP; /v1/traces is added by the SDK)."""
        return f"http://{HOST}:{self.otlp_port}"

    @property
    def query_url(self) -> str:
        """The query API and the UI."""
        return f"http://{HOST}:{self.query_port}"

    def start(self) -> Jaeger:
        env = dict(os.environ)
        env.update(
            JAEGER_OTLP_HTTP_PORT=str(self.otlp_port),
            JAEGER_QUERY_PORT=str(self.query_port),
            JAEGER_QUERY_GRPC_PORT=str(self.grpc_port),
            JAEGER_HEALTH_PORT=str(self.health_port),
            JAEGER_UI_ASSETS=str(self.ui_assets or UI_ASSETS),
        )
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix="jaeger-", suffix=".log")
            os.close(handle)
            self.log_path = Path(name)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(binary()), "--config", f"file:{CONFIG}"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                msg = f"jaeger exited with {self.process.returncode}; see {self.log_path}"
                raise RuntimeError(msg)
            try:
                self.get("/api/services")
                with socket.create_connection((HOST, self.otlp_port), timeout=1):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        self.stop()
        msg = f"jaeger was not ready within {READY_TIMEOUT:.0f} s; see {self.log_path}"
        raise RuntimeError(msg)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.query_url}{path}", timeout=5) as answer:
            return json.load(answer)

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """The trace as the query API gives it (`spans`, `processes`), or None while unknown."""
        try:
            found = self.get(f"/api/traces/{trace_id}")
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise
        traces = found.get("data") or []
        return traces[0] if traces else None

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> Jaeger:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def for_service(env: dict[str, str]) -> Jaeger:
    """`make run TRACING=1`: a Jaeger, and the service's OTEL_* variables pointing at it."""
    print("starting Jaeger (traces) …", flush=True)
    running = Jaeger().start()
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=running.otlp_endpoint,
        OTEL_SERVICE_NAME=env.get("OTEL_SERVICE_NAME", "campaign-ledger"),
    )
    print(f"Jaeger is at {running.query_url}/ : the traces of the demo's events", flush=True)
    return running


def main() -> int:
    with Jaeger() as jaeger:
        print(f"OTEL_EXPORTER_OTLP_ENDPOINT={jaeger.otlp_endpoint}", flush=True)
        print(f"Jaeger UI and query API: {jaeger.query_url}  (Ctrl-C stops it)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while jaeger.process is not None and jaeger.process.poll() is None:
                time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
