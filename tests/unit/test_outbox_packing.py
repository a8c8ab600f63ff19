"""The snapshot outbox as stored in a snapshot document: packed, and read back exactly."""

from __future__ import annotations

import zlib

import orjson

from service.adapters.mongo_store import OutboxEntry, pack_outbox, unpack_outbox


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


def test_entries_stored_unpacked_by_an_older_version_are_read() -> None:
    old = entry(7)
    stored = [
        {
            "id": old.id,
            "kind": old.kind,
            "revision": old.revision,
            "key": old.key,
            "event": orjson.loads(old.value),
        }
    ]
    assert unpack_outbox("c-1", stored) == [old]


def test_entries_packed_by_an_older_version_with_zlib_are_read() -> None:
    entries = [entry(n) for n in range(1, 4)]
    header = [[e.id, e.kind, e.revision, e.key, len(e.value)] for e in entries]
    data = b"\n".join([orjson.dumps(header), *(e.value for e in entries)])
    assert unpack_outbox("c-1", zlib.compress(data, 1)) == entries
