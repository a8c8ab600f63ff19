"""Toxiproxy, the TCP fault proxy of the network-fault tests and the soak.

Three parts:

- `ensure_toxiproxy()`: the server and CLI binaries, built from the Go module proxy into
  `.cache/tools/bin` by `make toxiproxy` (the Makefile pins the version; this runs it, so
  `pytest` alone works on a bare machine with Go, and a second call costs a `make` no-op);
- `ToxiproxyServer`: the server as a local process (dev.stack's `LocalServer`: own session,
  pid and log file, killed with a killed test run), its HTTP API on a loopback port;
- `Toxiproxy`: a small typed async client of that API: proxies (listen -> upstream, enabled
  or not) and toxics (latency, bandwidth, timeout, reset_peer, slicer, limit_data,
  slow_close), each toxic on one direction of a proxy, for a share (`toxicity`) of its
  connections.

Toxiproxy has no packet loss of its own: `lossy_link` approximates it (see there).
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

import httpx

from dev.servers.common import LOCALHOST, REPO_ROOT, StackError, port_open
from dev.servers.process import LocalServer

TOOLS_BIN = REPO_ROOT / ".cache" / "tools" / "bin"
SERVER_BINARY = TOOLS_BIN / "toxiproxy-server"
CLI_BINARY = TOOLS_BIN / "toxiproxy-cli"

Stream = Literal["upstream", "downstream"]
ToxicType = Literal[
    "latency", "bandwidth", "timeout", "reset_peer", "slicer", "limit_data", "slow_close"
]

_BUILD_LOCK = threading.Lock()


def ensure_toxiproxy(timeout: float = 900.0) -> Path:
    """Build (once) and return the server binary; StackError with make's output on failure.

    `make` decides whether anything is to be done, so the version lives in one place.
    """
    with _BUILD_LOCK:
        result = subprocess.run(
            ["make", "--no-print-directory", "-s", "toxiproxy"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if result.returncode != 0 or not SERVER_BINARY.exists():
        raise StackError(
            "could not build toxiproxy (`make toxiproxy`, needs Go and the Go module proxy):\n"
            + (result.stdout + result.stderr)[-3000:]
        )
    return SERVER_BINARY


class ToxiproxyServer(LocalServer):
    """`toxiproxy-server` on `host:port` (its API); proxies are made through `Toxiproxy`."""

    name = "toxiproxy"

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int,
        host: str = LOCALHOST,
        seed: int = 1,
        ready_timeout: float = 30.0,
        die_with_parent: bool = True,
    ) -> None:
        data_dir = Path(data_dir)
        super().__init__(
            host=host,
            port=port,
            data_dir=data_dir,
            log_file=data_dir / "toxiproxy.log",
            pid_file=data_dir / "toxiproxy.pid",
            ready_timeout=ready_timeout,
            die_with_parent=die_with_parent,
        )
        # A fixed seed: which connections a partial toxic hits is the same run after run.
        self.seed = seed

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _prepare(self) -> None:
        ensure_toxiproxy()

    def _command(self) -> list[str]:
        return [
            str(SERVER_BINARY),
            "-host",
            self.host,
            "-port",
            str(self.port),
            "-seed",
            str(self.seed),
        ]

    def _identity_marker(self) -> str:
        return f"-port {self.port}"

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._alive():
                raise StackError("toxiproxy exited while starting")
            if self.is_healthy(1.0):
                return
            time.sleep(0.1)
        raise StackError(f"toxiproxy API not answering on {self.api_url} within {timeout}s")

    def is_healthy(self, timeout: float = 5.0) -> bool:
        if not port_open(self.host, self.port, timeout):
            return False
        try:
            return httpx.get(f"{self.api_url}/version", timeout=timeout).status_code == 200
        except httpx.HTTPError:
            return False


@dataclass(frozen=True)
class Toxic:
    """One toxic as the API describes it."""

    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_api(cls, body: Mapping[str, Any]) -> Toxic:
        return cls(
            name=body["name"],
            type=body["type"],
            stream=body["stream"],
            toxicity=float(body["toxicity"]),
            attributes=dict(body.get("attributes") or {}),
        )


@dataclass(frozen=True)
class Proxy:
    name: str
    listen: str
    upstream: str
    enabled: bool
    toxics: tuple[Toxic, ...] = ()

    @classmethod
    def from_api(cls, body: Mapping[str, Any]) -> Proxy:
        return cls(
            name=body["name"],
            listen=body["listen"],
            upstream=body["upstream"],
            enabled=bool(body["enabled"]),
            toxics=tuple(Toxic.from_api(t) for t in body.get("toxics") or ()),
        )


class ToxiproxyError(RuntimeError):
    """The API refused a request (its status and body)."""


class Toxiproxy:
    """The HTTP API of a running toxiproxy server."""

    def __init__(self, api_url: str, timeout: float = 10.0) -> None:
        self._http = httpx.AsyncClient(base_url=api_url, timeout=timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        response = await self._http.request(method, path, json=body)
        if response.status_code >= 400:
            raise ToxiproxyError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    async def version(self) -> str:
        response = await self._http.get("/version")
        response.raise_for_status()
        return response.text.strip()

    async def create_proxy(self, name: str, listen: str, upstream: str) -> Proxy:
        body = {"name": name, "listen": listen, "upstream": upstream, "enabled": True}
        return Proxy.from_api(await self._call("POST", "/proxies", body))

    async def proxy(self, name: str) -> Proxy:
        return Proxy.from_api(await self._call("GET", f"/proxies/{name}"))

    async def delete_proxy(self, name: str) -> None:
        await self._call("DELETE", f"/proxies/{name}")

    async def set_enabled(self, name: str, enabled: bool) -> Proxy:
        """Disabled: every connection through it is closed and new ones are refused."""
        return Proxy.from_api(await self._call("POST", f"/proxies/{name}", {"enabled": enabled}))

    async def add_toxic(
        self,
        proxy: str,
        type_: ToxicType,
        *,
        name: str | None = None,
        stream: Stream = "downstream",
        toxicity: float = 1.0,
        **attributes: int | float,
    ) -> Toxic:
        body = {
            "name": name or f"{type_}_{stream}",
            "type": type_,
            "stream": stream,
            "toxicity": toxicity,
            "attributes": attributes,
        }
        return Toxic.from_api(await self._call("POST", f"/proxies/{proxy}/toxics", body))

    async def remove_toxic(self, proxy: str, name: str) -> None:
        await self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")

    async def clear(self, proxy: str) -> None:
        """Every toxic of `proxy` removed, and the proxy enabled."""
        for toxic in (await self.proxy(proxy)).toxics:
            await self.remove_toxic(proxy, toxic.name)
        await self.set_enabled(proxy, True)

    # ----------------------------------------------------------------- composite faults

    async def latency(self, proxy: str, ms: int, jitter_ms: int = 0) -> None:
        """Each chunk of data waits `ms` ± `jitter_ms` (uniform), both directions."""
        for stream in ("upstream", "downstream"):
            await self.add_toxic(
                proxy, "latency", stream=stream, latency=ms // 2, jitter=jitter_ms // 2
            )

    async def black_hole(self, proxy: str) -> None:
        """Connections stay open and every byte either way is dropped (the `timeout` toxic
        with timeout 0); new connections are accepted and go nowhere either."""
        for stream in ("upstream", "downstream"):
            await self.add_toxic(proxy, "timeout", stream=stream, timeout=0)

    async def bandwidth(self, proxy: str, kb_per_second: int) -> None:
        for stream in ("upstream", "downstream"):
            await self.add_toxic(proxy, "bandwidth", stream=stream, rate=kb_per_second)

    async def lossy_link(self, proxy: str, loss: float = 0.2) -> None:
        """An approximation of packet loss, which a TCP proxy cannot drop for real.

        On a real link TCP retransmits lost segments: the stream arrives whole but late and
        in stalls, and under heavy loss some connections time out and reset. So: data cut
        into small slices, each delayed a little (retransmission stalls, for every
        connection), plus `loss` of the connections (toxicity) suffering a long stall and a
        `loss` share reset after a short while (a connection given up). The share is drawn
        per connection, so clients that reconnect meet it again.
        """
        for stream in ("upstream", "downstream"):
            await self.add_toxic(
                proxy,
                "slicer",
                name=f"slices_{stream}",
                stream=stream,
                average_size=512,
                size_variation=256,
                delay=2_000,  # microseconds between slices
            )
            await self.add_toxic(
                proxy,
                "latency",
                name=f"stalls_{stream}",
                stream=stream,
                toxicity=loss,
                latency=400,
                jitter=300,
            )
        await self.add_toxic(
            proxy, "reset_peer", name="resets", stream="upstream", toxicity=loss, timeout=3_000
        )
