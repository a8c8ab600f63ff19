"""How long MongoDB takes for each command, by command and collection.

A pymongo command listener: the driver reports every command it sends, with how long the
server took to answer. A batch's `write` phase is several commands (tracing showed where its
time goes with these), and an operator asking "is the database slow, and at what?" gets the
answer per collection instead of per batch.
"""

from __future__ import annotations

from typing import Protocol

from pymongo import monitoring


class Observer(Protocol):
    """A labelled histogram (prometheus_client's Histogram, say)."""

    def labels(self, command: str, collection: str) -> _Timer: ...


class _Timer(Protocol):
    def observe(self, amount: float) -> None: ...


Answer = monitoring.CommandSucceededEvent | monitoring.CommandFailedEvent


class CommandTimer(monitoring.CommandListener):
    def __init__(self, seconds: Observer) -> None:
        self.seconds = seconds
        # The collection a command in flight names, by (connection, request id): the answer's
        # event carries neither the command nor its collection.
        self._collections: dict[tuple[object, int], str] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        named = event.command.get(event.command_name)
        if event.command_name == "getMore":
            named = event.command.get("collection")
        if isinstance(named, str):
            self._collections[(event.connection_id, event.request_id)] = named

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._observe(event)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._observe(event)

    def _observe(self, event: Answer) -> None:
        collection = self._collections.pop((event.connection_id, event.request_id), "")
        self.seconds.labels(event.command_name, collection).observe(event.duration_micros / 1e6)
