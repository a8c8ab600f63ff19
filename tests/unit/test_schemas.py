"""schemas/ is generated from the code; this fails on any drift between the two."""

from __future__ import annotations

import json
from pathlib import Path

from service.bootstrap import build
from service.schemas import event_models, write_schemas
from service.settings import Settings

COMMITTED = Path(__file__).resolve().parents[2] / "schemas"


def test_committed_schemas_match_the_code(tmp_path: Path) -> None:
    generated = write_schemas(tmp_path, build(Settings.defaults()).asyncapi())
    for path in generated:
        committed = COMMITTED / path.name
        assert committed.exists(), f"{committed} is missing: run `make schemas`"
        assert json.loads(committed.read_text()) == json.loads(path.read_text()), (
            f"{committed.name} drifted from the code: run `make schemas` and commit"
        )
    extra = {p.name for p in COMMITTED.glob("*.json")} - {p.name for p in generated}
    assert not extra, f"schemas/ holds files the code no longer makes: {extra}"


def test_every_event_type_has_a_schema() -> None:
    types = set(event_models())
    assert "campaign.snapshot.updated" in types
    assert "campaign.event.rejected" in types
    assert len(types) == 13
