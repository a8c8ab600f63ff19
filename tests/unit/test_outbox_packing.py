"""The snapshot outbox as stored in a snapshot document: packed, and read back exactly."""

from __future__ import annotations

import orjson
import pytest

from service.adapters.mongo_outbox import pack_outbox, unpack_outbox
from service.app.outbox import OutboxEntry


def entry(revision: int) -> OutboxEntry:
    event = {"id": f"snapshot:c-1:{revision}", "data": {"revision": revision, "name": "é ✓"}}
    return OutboxEntry(
        f"c-1:{revision:012d}", "c-1", "snapshot", revision, "c-1", orjson.dumps(event)
    )


def test_packed_entries_come_back_byte_for_byte() -> None:
    entries = [entry(n) for n in range(1, 30)]
    packed = pack_outbox(entries)
    assert unpack_outbox("c-1", packed) == entries
    # revisions of one campaign share most of their bytes
    assert len(packed) < sum(len(e.value) for e in entries) / 2


def test_an_unknown_packing_is_refused_not_misread() -> None:
    with pytest.raises(ValueError, match="unknown packing"):
        unpack_outbox("c-1", b"\x78" + b"anything")
