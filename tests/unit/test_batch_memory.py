"""A batch's state goes when the batch ends: no reference cycle keeps it for the cyclic
collector's next full pass (the 1,000,000-event fill's RSS grew with batches waiting for it)."""

from __future__ import annotations

import gc
import random

from tests.unit.test_properties import scenario
from tests.unit.test_publication import run


def test_applying_batches_leaves_no_cyclic_garbage() -> None:
    batches = [[item] for item in scenario(random.Random(7))]
    gc.collect()
    gc.disable()
    try:
        run(batches, "every")
        assert gc.collect() == 0
    finally:
        gc.enable()
