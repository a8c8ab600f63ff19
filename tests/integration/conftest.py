from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.harness import Ledger, isolated_settings, running_ledger


@pytest.fixture
async def ledger(kafka_bootstrap: str, mongodb_uri: str) -> AsyncIterator[Ledger]:
    async with running_ledger(isolated_settings(kafka_bootstrap, mongodb_uri)) as running:
        yield running
