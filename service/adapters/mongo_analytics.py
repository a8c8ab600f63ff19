"""Iteration analytics across campaigns: one MongoDB aggregation over versions and audits.

The question spans every campaign, so on a sharded cluster this pipeline runs
scatter-gather: every shard filters and projects its own campaigns' versions and scored
audit reports (and starts the per-version `$group`), and the merging shard finishes the
grouping, the window stages and the `$facet`. What comes back to the service is a few rows
per artifact type and week, versions-until-passed value and round and category, never a
document per version; `service.domain.iteration_metrics` turns them into the figures.

Operators: `$unionWith` (MongoDB 4.4), `$setWindowFields` with `$shift` and
`$documentNumber`, `$dateTrunc` (5.0), `$bottom` (5.2); each was tried on SecantusDB too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ExecutionTimeout

from service.adapters import mongo_schema as cols

Document = dict[str, Any]

# The audit states that are a verdict on a version (`unaudited` means the audit itself
# failed, `pending` that none has arrived).
VERDICTS = ["passed", "conditional", "failed"]


def _when(condition: Any, value: Any) -> Document:
    return {"$cond": [condition, value, None]}


def _totals(key: Any) -> Document:
    return {
        "$group": {
            "_id": key,
            "artifacts": {"$sum": 1},
            "versions": {"$sum": "$versions"},
            "passed": {"$sum": {"$cond": [{"$gt": ["$to_pass", 0]}, 1, 0]}},
            "to_pass_sum": {"$sum": "$to_pass"},
            "first_judged": {"$sum": {"$cond": [{"$in": ["$first_s", VERDICTS]}, 1, 0]}},
            "first_passed": {"$sum": {"$cond": [{"$eq": ["$first_s", "passed"]}, 1, 0]}},
            "approved": {"$sum": {"$cond": [{"$gt": ["$approval_ms", None]}, 1, 0]}},
            "approval_ms_sum": {"$sum": "$approval_ms"},
        }
    }


# One row per artifact: its first version's document carries the artifact's figures.
_ARTIFACT_ROWS: list[Document] = [
    {"$match": {"head": 1}},
    {
        "$project": {
            "t": 1,
            "versions": 1,
            "first_s": 1,
            "to_pass": 1,
            "week": {"$dateTrunc": {"date": "$first_c", "unit": "week", "startOfWeek": "monday"}},
            "approval_ms": _when(
                {"$eq": [{"$type": "$approved_at"}, "date"]},
                {"$subtract": ["$approved_at", "$first_c"]},
            ),
        }
    },
]


def pipeline(
    since: datetime | None, until: datetime | None, artifact_type: str | None
) -> list[Document]:
    """Artifacts whose first version was made in [since, until): per type, per week, per
    versions-until-passed, and score changes per feedback round and category.

    Built from stages, not array expressions (which a MongoDB-compatible server may evaluate
    slowly): a version and its latest scored audit meet in a `$group` on the version id, an
    artifact's figures reach each of its versions through a `$setWindowFields` per artifact,
    and a version meets the one before it in a `$setWindowFields` per artifact and category.
    """
    versions_match: Document = {}
    if artifact_type is not None:
        versions_match["artifact_type"] = artifact_type
    window: Document = {}
    if since is not None:
        window["$gte"] = since
    if until is not None:
        window["$lt"] = until
    return [
        {"$match": versions_match},
        {
            "$project": {
                "_id": 0,
                "a": "$artifact_id",
                "t": "$artifact_type",
                "n": "$version_number",
                "v": "$_id",
                "p": "$parent_version_id",
                "c": "$created_at",
                "s": "$audit_state",
                "ap": "$approved_at",
            }
        },
        {
            "$unionWith": {
                "coll": cols.AUDIT_REPORTS,
                "pipeline": [
                    {"$match": {"category_scores": {"$type": "object"}}},
                    {
                        "$project": {
                            "_id": 0,
                            "v": "$version_id",
                            "at": "$attempt",
                            "sc": "$category_scores",
                        }
                    },
                ],
            }
        },
        # A version and its audits: the version's fields, and the scores of its highest
        # scored attempt (the version's own document has no attempt: it sorts first).
        {
            "$group": {
                "_id": "$v",
                "a": {"$max": "$a"},
                "t": {"$max": "$t"},
                "n": {"$max": "$n"},
                "p": {"$max": "$p"},
                "c": {"$max": "$c"},
                "s": {"$max": "$s"},
                "ap": {"$max": "$ap"},
                "sc": {"$bottom": {"sortBy": {"at": 1}, "output": "$sc"}},
            }
        },
        # audits of versions the type filter left out
        {"$match": {"n": {"$gt": 0}}},
        # the artifact's figures, on each of its versions
        {
            "$setWindowFields": {
                "partitionBy": "$a",
                "sortBy": {"n": 1},
                "output": {
                    # 1 on the artifact's first version: one row per artifact
                    "head": {"$documentNumber": {}},
                    "first_c": {"$first": "$c"},
                    "first_s": {"$first": "$s"},
                    "versions": {"$sum": 1},
                    "to_pass": {"$min": _when({"$eq": ["$s", "passed"]}, "$n")},
                    "approved_at": {"$min": "$ap"},
                },
            }
        },
        *([{"$match": {"first_c": window}}] if window else []),
        {
            "$facet": {
                # per type and week; a type's totals are the sum of its weeks
                "by_week": [*_ARTIFACT_ROWS, _totals({"t": "$t", "week": "$week"})],
                "to_pass": [
                    {"$match": {"head": 1, "to_pass": {"$gt": 0}}},
                    {"$group": {"_id": {"t": "$t", "n": "$to_pass"}, "artifacts": {"$sum": 1}}},
                ],
                # A round: a version and the one it was made from (its parent, or the one
                # numbered one less when it names no parent), per category scored on both.
                "rounds": [
                    {
                        "$project": {
                            "a": 1,
                            "t": 1,
                            "n": 1,
                            "v": "$_id",
                            "p": 1,
                            "sc": {"$objectToArray": "$sc"},
                        }
                    },
                    {"$unwind": "$sc"},
                    {
                        "$setWindowFields": {
                            "partitionBy": {"a": "$a", "k": "$sc.k"},
                            "sortBy": {"n": 1},
                            "output": {
                                "prev_n": {"$shift": {"output": "$n", "by": -1}},
                                "prev_v": {"$shift": {"output": "$v", "by": -1}},
                                "prev_score": {"$shift": {"output": "$sc.v.score", "by": -1}},
                            },
                        }
                    },
                    {
                        "$match": {
                            "prev_score": {"$type": "number"},
                            "sc.v.score": {"$type": "number"},
                            "$expr": {
                                "$cond": [
                                    {"$gt": ["$p", None]},
                                    {"$eq": ["$p", "$prev_v"]},
                                    {"$eq": ["$prev_n", {"$subtract": ["$n", 1]}]},
                                ]
                            },
                        }
                    },
                    {
                        "$group": {
                            # sums, not a sum of differences: field reads only
                            "_id": {"t": "$t", "n": "$n", "k": "$sc.k"},
                            "rounds": {"$sum": 1},
                            "score_sum": {"$sum": "$sc.v.score"},
                            "prev_sum": {"$sum": "$prev_score"},
                        }
                    },
                ],
            }
        },
    ]


class TooSlow(Exception):
    """The aggregation ran past its time limit (`maxTimeMS`) and was stopped by the server."""


class MongoAnalytics:
    """Reads for `GET /analytics/iterations`."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db

    async def iteration_rows(
        self,
        since: datetime | None,
        until: datetime | None,
        artifact_type: str | None,
        max_seconds: float,
    ) -> Document:
        try:
            cursor = await self.db[cols.VERSIONS].aggregate(
                pipeline(since, until, artifact_type),
                maxTimeMS=int(max_seconds * 1000),
                allowDiskUse=True,
            )
            rows = await cursor.to_list()
        except ExecutionTimeout as error:
            raise TooSlow(f"the analytics aggregation took more than {max_seconds} s") from error
        result: Document = rows[0] if rows else {}
        return result
