"""The in-process service behind a real HTTP server, and a Server-Sent Events reader.

httpx's ASGI transport buffers a whole response, so streams need a real socket: uvicorn
serves the running service's app on a free loopback port (its lifespan is run by
`running_ledger`, not by uvicorn).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import uvicorn

from dev.servers.common import free_port
from service.bootstrap import Service


@contextlib.asynccontextmanager
async def http_server(service: Service) -> AsyncIterator[str]:
    """Serve `service.app` on 127.0.0.1; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        service.app, host="127.0.0.1", port=port, lifespan="off", log_config=None
    )
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        service.begin_stop()  # ends the open streams, as on SIGTERM
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@dataclass
class SseMessage:
    event: str
    id: str
    data: dict[str, Any]


@dataclass
class SseReader:
    """Reads one stream in the background; `messages` grows as they arrive."""

    response: httpx.Response
    messages: list[SseMessage] = field(default_factory=list)
    comments: int = 0
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        fields: dict[str, str] = {}
        try:
            async for line in self.response.aiter_lines():
                if line.startswith(":"):
                    self.comments += 1
                elif line == "":
                    if "data" in fields:
                        self.messages.append(
                            SseMessage(
                                fields.get("event", "message"),
                                fields.get("id", ""),
                                orjson.loads(fields["data"]),
                            )
                        )
                        self.arrived.set()
                    fields = {}
                else:
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
        except (httpx.ReadError, httpx.RemoteProtocolError):
            pass
        finally:
            self.ended.set()

    async def wait_for(self, count: int, timeout: float = 15.0) -> list[SseMessage]:
        async def enough() -> None:
            while len(self.messages) < count:
                self.arrived.clear()
                if self.ended.is_set():
                    break
                await asyncio.wait(
                    [
                        asyncio.create_task(self.arrived.wait()),
                        asyncio.create_task(self.ended.wait()),
                    ],
                    return_when=asyncio.FIRST_COMPLETED,
                )

        await asyncio.wait_for(enough(), timeout)
        assert len(self.messages) >= count, (count, self.messages)
        return self.messages


@contextlib.asynccontextmanager
async def sse(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> AsyncIterator[SseReader]:
    """Open a stream (status 200 asserted) and read it in the background."""
    async with client.stream("GET", url, headers=headers or {}) as response:
        assert response.status_code == 200, (url, response.status_code, await response.aread())
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = SseReader(response)
        task = asyncio.create_task(reader.run())
        try:
            yield reader
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
