"""SNAPSHOT_PUBLICATION=latest: the same revisions and the same stored state as
`every`, but of the revisions one batch makes for a campaign only the newest is published."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.domain.ledger import Changes, Inbound, Missing, Publication, apply_batch, prefetch_keys
from tests.unit import factories as f
from tests.unit.memory_store import Clock, MemoryStore
from tests.unit.test_properties import scenario


def run(
    batches: list[list[Inbound]], publication: Publication
) -> tuple[MemoryStore, list[Changes]]:
    store, clock, out = MemoryStore(), Clock(), []
    for batch in batches:
        now, seq_base = clock.tick(len(batch))
        view = store.load_view(prefetch_keys(batch))
        while True:
            try:
                changes = apply_batch(
                    batch, view, now=now, seq_base=seq_base, publication=publication
                )
                break
            except Missing as missing:
                store.fill(view, missing)
        store.commit(changes, view)
        out.append(changes)
    return store, out


def newest_per_campaign(snapshots: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    newest: dict[str, dict[str, Any]] = {}
    for snapshot in snapshots:
        newest[snapshot["campaign_id"]] = snapshot
    return newest


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_latest_publishes_the_newest_revision_of_each_batch_and_stores_the_same(
    seed: int,
) -> None:
    rnd = random.Random(seed)
    events = scenario(rnd)
    batches, index = [], 0
    while index < len(events):
        size = rnd.randint(1, 8)
        batches.append(events[index : index + size])
        index += size
    every_store, every = run(batches, "every")
    latest_store, latest = run(batches, "latest")
    assert latest_store.documents() == every_store.documents()
    for all_of_them, newest in zip(every, latest, strict=True):
        assert newest.revisions == all_of_them.revisions == len(all_of_them.snapshots)
        by_campaign = newest_per_campaign(all_of_them.snapshots)
        assert {s["campaign_id"]: s for s in newest.snapshots} == by_campaign
        assert len(newest.snapshots) == len(by_campaign)  # one per campaign, no more


def test_three_versions_in_one_batch_publish_revision_three_only() -> None:
    batch = [f.generated("c-1", "a-1", f"v-{n}") for n in (1, 2, 3)]
    _, [changes] = run([batch], "latest")
    assert changes.revisions == 3
    assert [(s["campaign_id"], s["revision"]) for s in changes.snapshots] == [("c-1", 3)]
    assert changes.snapshots[0]["counts"]["versions"] == 3
