"""What the use cases need of the store: its transactions, its outbox, and what its failures
mean. MongoDB implements it (`service.adapters.mongo_store`); the use cases see only this."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import Protocol, TypeVar

from service.app.outbox import OutboxEntry, Stamp, StoredEntries
from service.domain.ledger import Changes, Missing, View

T = TypeVar("T")


class StoreUnavailable(Exception):
    """The store cannot be reached now; the batch is retried later, nothing is lost."""


class StoreRejected(Exception):
    """The store refused the batch for what it contains; retrying would fail the same way."""


class ConcurrentUpdate(Exception):
    """Another writer changed a campaign this batch read; run the batch again."""


class Transaction(Protocol):
    """The reads and writes of one batch, all or nothing."""

    noted: dict[str, datetime | None]  # when each campaign's delete was applied
    none_held: bool  # the reads found no held event anywhere
    lent: bool  # some state came from memory, not from this transaction's reads

    @property
    def stored_outbox(self) -> Mapping[str, StoredEntries]:
        """The outbox entries each loaded campaign document holds."""

    async def load(self, view: View, keys: Mapping[str, set[str]]) -> None: ...

    async def load_missing(self, view: View, missing: Missing) -> None: ...

    async def published_marks(self, writers: Iterable[str]) -> dict[str, int]: ...

    def restamp(self, campaigns: Mapping[str, int], stamp: Stamp) -> None: ...

    async def write(
        self,
        view: View,
        changes: Changes,
        outbox: list[OutboxEntry],
        now: datetime,
        *,
        stamp: Stamp,
    ) -> list[OutboxEntry]: ...


class Outbox(Protocol):
    """The outbox outside any batch's transaction."""

    async def pending(self, campaign_ids: Iterable[str]) -> list[OutboxEntry]: ...

    async def delete(self, entries: Iterable[OutboxEntry]) -> None: ...

    async def mark_published(self, stamp: Stamp, now: datetime) -> None: ...


class Store(Protocol):
    @property
    def outbox(self) -> Outbox: ...

    async def in_transaction(
        self, work: Callable[[Transaction], Awaitable[T]], *, write_first: bool = False
    ) -> T: ...
