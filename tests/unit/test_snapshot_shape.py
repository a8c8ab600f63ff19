"""One snapshot shape: what the rules render (`CampaignState.snapshot`) is exactly the
pydantic `CampaignSnapshot` that documents it (JSON Schema, AsyncAPI, OpenAPI), on generated
campaigns: no field the model lacks, none it has that the rendering leaves out."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.events import CampaignSnapshot
from tests.unit.memory_store import MemoryStore
from tests.unit.test_properties import deliver, scenario, shuffled


@settings(max_examples=40, deadline=None)  # a scenario takes longer on a busy machine
@given(st.randoms(use_true_random=False), st.randoms(use_true_random=False))
def test_every_rendered_snapshot_is_the_documented_shape(
    make: random.Random, mix: random.Random
) -> None:
    store = MemoryStore()
    delivery = deliver(store, shuffled(mix, scenario(make)))
    assert delivery.snapshots
    for snapshot in delivery.snapshots:
        documented = CampaignSnapshot.model_validate(snapshot).model_dump(mode="json")
        assert documented == snapshot
