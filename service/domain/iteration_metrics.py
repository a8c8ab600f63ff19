"""Iteration figures per artifact type, from the grouped rows the analytics aggregation
returns (`service.adapters.mongo_analytics`). No I/O: the arithmetic that is left once the
database has grouped its rows per type and week, versions-until-passed, and round and
category (a type's totals are the sum of its weeks).

Definitions (the README's "Reviewing and analytics" and docs/reviewing.md repeat them):

- an artifact counts in a window when its first version was made in `[since, until)`; all of
  its versions count with it, and the week of its first version is its week;
- versions until the first `passed`: the number of the artifact's lowest-numbered version
  whose `audit_state` is `passed` (1 when the first version passed); artifacts that never
  passed are left out of the mean and p90, and counted as `artifacts_passed` beside them;
- p90: nearest rank (the smallest value with at least 90 % of the artifacts at or below);
- first-pass rate: artifacts whose first version is `passed`, over those whose first
  version has a verdict (`passed`, `conditional` or `failed`; not `pending`, not `unaudited`);
- a feedback round is a version and the version it was made from (its `parent_version_id`
  when that names a version of the same artifact, else the version numbered one less);
  round r is the one that made version r + 1. Its score change per category is the
  category's score in the newer version's latest scored audit minus the older one's, for
  categories scored on both sides (the aggregation pairs each version with the one before
  it that has the category scored, so a round from an older parent, past a scored version
  in between, is not counted);
- time to approval: from the artifact's first version's `created_at` to the earliest
  `approved_at` of its versions, over artifacts with an approved version.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

Row = dict[str, Any]


def percentile(histogram: dict[int, int], fraction: float) -> int | None:
    """Nearest-rank percentile of a histogram {value: how many}."""
    total = sum(histogram.values())
    if total == 0:
        return None
    needed = fraction * total
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= needed - 1e-9:
            return value
    return max(histogram)


def _ratio(part: float, whole: float, digits: int = 4) -> float | None:
    return None if whole == 0 else round(part / whole, digits)


def _totals(row: Row) -> dict[str, Any]:
    approved = row.get("approved", 0)
    return {
        "artifacts": row.get("artifacts", 0),
        "versions": row.get("versions", 0),
        "artifacts_passed": row.get("passed", 0),
        "mean_versions_to_first_pass": _ratio(row.get("to_pass_sum", 0), row.get("passed", 0)),
        "first_versions_judged": row.get("first_judged", 0),
        "first_pass_rate": _ratio(row.get("first_passed", 0), row.get("first_judged", 0)),
        "artifacts_approved": approved,
        "mean_seconds_to_approval": (
            None if approved == 0 else round(row.get("approval_ms_sum", 0) / approved / 1000, 3)
        ),
    }


def _week(value: Any) -> str:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).date().isoformat()
    return str(value)


def figures(rows: Row) -> list[dict[str, Any]]:
    """One entry per artifact type (by name), each with its `by_week` series (by week)."""
    histograms: dict[str, dict[int, int]] = {}
    for row in rows.get("to_pass", []):
        key = row["_id"]
        histograms.setdefault(key["t"], {})[int(key["n"])] = row["artifacts"]
    per_category: dict[str, dict[str, list[float]]] = {}
    per_round: dict[str, dict[int, dict[str, list[float]]]] = {}
    for row in rows.get("rounds", []):
        # grouped by the newer version's number: round r made version r + 1
        key = row["_id"]
        change = row["score_sum"] - row["prev_sum"]
        sums = per_category.setdefault(key["t"], {}).setdefault(key["k"], [0.0, 0])
        sums[0] += change
        sums[1] += row["rounds"]
        by_round = per_round.setdefault(key["t"], {}).setdefault(int(key["n"]) - 1, {})
        by_round[key["k"]] = [change, row["rounds"]]
    weeks: dict[str, list[dict[str, Any]]] = {}
    by_type: dict[str, Row] = {}
    for row in rows.get("by_week", []):
        key = row["_id"]
        weeks.setdefault(key["t"], []).append({"week": _week(key["week"]), **_totals(row)})
        # the weeks add up to the type's totals (every field is a count or a sum)
        total = by_type.setdefault(key["t"], {"_id": key["t"]})
        for name, value in row.items():
            if name != "_id":
                total[name] = total.get(name, 0) + value

    def mean_change(sums: list[float]) -> dict[str, Any]:
        return {"mean": round(sums[0] / sums[1], 3), "rounds": int(sums[1])}

    out = []
    for row in sorted(by_type.values(), key=lambda r: str(r["_id"])):
        kind = row["_id"]
        histogram = histograms.get(kind, {})
        categories = per_category.get(kind, {})
        rounds = per_round.get(kind, {})
        out.append(
            {
                "artifact_type": kind,
                **_totals(row),
                "p90_versions_to_first_pass": percentile(histogram, 0.9),
                "versions_to_first_pass": [
                    {"versions": n, "artifacts": histogram[n]} for n in sorted(histogram)
                ],
                "score_change_per_round": {
                    k: mean_change(categories[k]) for k in sorted(categories)
                },
                "score_change_by_round": [
                    {
                        "round": r,
                        "categories": {k: mean_change(rounds[r][k]) for k in sorted(rounds[r])},
                    }
                    for r in sorted(rounds)
                ],
                "by_week": sorted(weeks.get(kind, []), key=lambda w: str(w["week"])),
            }
        )
    return out
