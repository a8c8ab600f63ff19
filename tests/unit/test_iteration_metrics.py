"""The arithmetic after the analytics aggregation: means, nearest-rank p90, rates, weeks."""

from __future__ import annotations

from datetime import datetime

from service.domain.iteration_metrics import figures, percentile


def test_nearest_rank_percentile() -> None:
    assert percentile({}, 0.9) is None
    assert percentile({1: 1}, 0.9) == 1
    assert percentile({1: 9, 5: 1}, 0.9) == 1  # 9 of 10 at or below 1
    assert percentile({1: 8, 5: 2}, 0.9) == 5
    assert percentile({1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1, 8: 1, 9: 1, 10: 1}, 0.9) == 9


def totals(**values: int) -> dict[str, int]:
    base = dict.fromkeys(
        ("artifacts", "versions", "passed", "to_pass_sum", "first_judged", "first_passed"), 0
    )
    return {**base, "approved": 0, "approval_ms_sum": 0, **values}


def test_figures_per_type_with_weeks_rounds_and_rates() -> None:
    rows = {
        # a type's totals are the sum of its weeks
        "by_week": [
            {
                "_id": {"t": "visual_concept", "week": datetime(2026, 11, 2)},
                **totals(artifacts=1, versions=1),
            },
            {
                "_id": {"t": "copy", "week": datetime(2026, 11, 9)},
                **totals(artifacts=1, versions=3, passed=1, to_pass_sum=3, first_judged=1),
            },
            {
                "_id": {"t": "copy", "week": datetime(2026, 11, 2)},
                **totals(
                    artifacts=2,
                    versions=3,
                    passed=1,
                    to_pass_sum=1,
                    first_judged=1,
                    first_passed=1,
                    approved=1,
                    approval_ms_sum=7_200_000,
                ),
            },
        ],
        "to_pass": [
            {"_id": {"t": "copy", "n": 3}, "artifacts": 1},
            {"_id": {"t": "copy", "n": 1}, "artifacts": 1},
        ],
        # grouped by the newer version's number: n = 2 is round 1
        "rounds": [
            {
                "_id": {"t": "copy", "n": 2, "k": "brand"},
                "rounds": 2,
                "score_sum": 130,
                "prev_sum": 100,
            },
            {
                "_id": {"t": "copy", "n": 3, "k": "brand"},
                "rounds": 1,
                "score_sum": 60,
                "prev_sum": 63,
            },
        ],
    }
    copy, visual = figures(rows)
    assert visual["artifact_type"] == "visual_concept"
    assert visual["mean_versions_to_first_pass"] is None and visual["first_pass_rate"] is None
    assert copy["artifact_type"] == "copy"
    assert copy["mean_versions_to_first_pass"] == 2.0
    assert copy["p90_versions_to_first_pass"] == 3
    assert copy["first_pass_rate"] == 0.5
    assert copy["mean_seconds_to_approval"] == 7200.0
    assert copy["versions_to_first_pass"] == [
        {"versions": 1, "artifacts": 1},
        {"versions": 3, "artifacts": 1},
    ]
    assert copy["score_change_per_round"] == {"brand": {"mean": 9.0, "rounds": 3}}
    assert copy["score_change_by_round"] == [
        {"round": 1, "categories": {"brand": {"mean": 15.0, "rounds": 2}}},
        {"round": 2, "categories": {"brand": {"mean": -3.0, "rounds": 1}}},
    ]
    assert [w["week"] for w in copy["by_week"]] == ["2026-11-02", "2026-11-09"]
    assert (copy["artifacts"], copy["versions"], copy["artifacts_passed"]) == (3, 6, 2)
    assert copy["by_week"][1]["mean_versions_to_first_pass"] == 3.0
    assert figures({}) == []
