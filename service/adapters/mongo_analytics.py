"""Iteration analytics across campaigns: one MongoDB aggregation over versions and audits.

The question spans every campaign, so on a sharded cluster this pipeline runs
scatter-gather: each shard groups its own campaigns' artifacts (an artifact, its versions and
its audit reports live on one shard, the shard key being `campaign_id`), and the merging
`$facet` sees one small row per artifact. What comes back is a few dozen grouped rows per
artifact type, never a document per version; `service.domain.iteration_metrics` turns them
into the figures.

Operators used are in MongoDB 5.2+ (`$sortArray` is 5.2, `$dateTrunc` 5.0, `$unionWith`
4.4) and in SecantusDB, where each was tried.
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


def _field(name: str) -> Document:
    """`$vs.<name>` spelled out: the values of one field of each version, in order (a path
    through an array of documents is not traversed by every MongoDB-compatible server)."""
    return {"$map": {"input": "$vs", "as": "x", "in": f"$$x.{name}"}}


def _versions_of_artifact() -> Document:
    """Per artifact: its versions by number, each with the scores of its latest scored audit."""
    return {
        "$let": {
            "vars": {
                "vs": {
                    "$sortArray": {
                        "input": {"$filter": {"input": "$items", "cond": {"$eq": ["$$this.k", 0]}}},
                        "sortBy": {"n": 1},
                    }
                },
                "audits": {
                    "$sortArray": {
                        "input": {"$filter": {"input": "$items", "cond": {"$eq": ["$$this.k", 1]}}},
                        "sortBy": {"at": -1},
                    }
                },
            },
            "in": {
                "$map": {
                    "input": "$$vs",
                    "as": "v",
                    "in": {
                        "n": "$$v.n",
                        "v": "$$v.v",
                        "p": "$$v.p",
                        "c": "$$v.c",
                        "s": "$$v.s",
                        "ap": "$$v.ap",
                        "t": "$$v.t",
                        # audits are newest attempt first: the first one of this version
                        "sc": {
                            "$first": {
                                "$filter": {
                                    "input": "$$audits",
                                    "as": "a",
                                    "cond": {"$eq": ["$$a.v", "$$v.v"]},
                                    "limit": 1,
                                }
                            }
                        },
                    },
                }
            },
        }
    }


def _rounds() -> Document:
    """Each feedback round of the artifact (a version and the one it was made from: its
    parent when that is a version of this artifact, else the version numbered one less) as
    `{r, k, d}`: round number, category, score change. Only categories scored on both sides."""
    return {
        "$reduce": {
            "input": {"$range": [1, {"$size": "$vs"}]},
            "initialValue": [],
            "in": {
                "$let": {
                    "vars": {
                        "cur": {"$arrayElemAt": ["$vs", "$$this"]},
                        "parent_at": {
                            "$indexOfArray": [
                                _field("v"),
                                {"$arrayElemAt": [_field("p"), "$$this"]},
                            ]
                        },
                    },
                    "in": {
                        "$let": {
                            "vars": {
                                "prev": {
                                    "$arrayElemAt": [
                                        "$vs",
                                        {
                                            "$cond": [
                                                {"$gte": ["$$parent_at", 0]},
                                                "$$parent_at",
                                                {"$subtract": ["$$this", 1]},
                                            ]
                                        },
                                    ]
                                },
                            },
                            "in": {
                                "$concatArrays": [
                                    "$$value",
                                    {
                                        "$let": {
                                            "vars": {
                                                "now": {
                                                    "$objectToArray": {
                                                        "$ifNull": ["$$cur.sc.sc", {}]
                                                    }
                                                },
                                                "before": {
                                                    "$objectToArray": {
                                                        "$ifNull": ["$$prev.sc.sc", {}]
                                                    }
                                                },
                                            },
                                            "in": _category_changes(),
                                        }
                                    },
                                ]
                            },
                        }
                    },
                }
            },
        }
    }


def _category_changes() -> Document:
    # For each category scored now, the same category's score before (when there was one).
    return {
        "$reduce": {
            "input": "$$now",
            "initialValue": [],
            "in": {
                "$let": {
                    "vars": {
                        "k": "$$this.k",
                        "score": "$$this.v.score",
                        "old": {
                            "$first": {
                                "$filter": {
                                    "input": "$$before",
                                    "as": "b",
                                    "cond": {"$eq": ["$$b.k", "$$this.k"]},
                                }
                            }
                        },
                    },
                    "in": {
                        "$cond": [
                            {
                                "$and": [
                                    {"$isNumber": "$$score"},
                                    {"$isNumber": "$$old.v.score"},
                                ]
                            },
                            {
                                "$concatArrays": [
                                    "$$value",
                                    [
                                        {
                                            "r": {"$subtract": ["$$cur.n", 1]},
                                            "k": "$$k",
                                            "d": {"$subtract": ["$$score", "$$old.v.score"]},
                                        }
                                    ],
                                ]
                            },
                            "$$value",
                        ]
                    },
                }
            },
        }
    }


def _totals(key: Any) -> Document:
    return {
        "$group": {
            "_id": key,
            "artifacts": {"$sum": 1},
            "versions": {"$sum": "$versions"},
            "passed": {"$sum": {"$cond": [{"$ne": ["$to_pass", None]}, 1, 0]}},
            "to_pass_sum": {"$sum": {"$ifNull": ["$to_pass", 0]}},
            "first_judged": {"$sum": {"$cond": ["$first_judged", 1, 0]}},
            "first_passed": {"$sum": {"$cond": ["$first_passed", 1, 0]}},
            "approved": {"$sum": {"$cond": [{"$ne": ["$approval_ms", None]}, 1, 0]}},
            "approval_ms_sum": {"$sum": {"$ifNull": ["$approval_ms", 0]}},
        }
    }


def pipeline(
    since: datetime | None, until: datetime | None, artifact_type: str | None
) -> list[Document]:
    """Artifacts whose first version was made in [since, until), by type and by week."""
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
                "k": {"$literal": 0},
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
                            "k": {"$literal": 1},
                            "a": "$artifact_id",
                            "v": "$version_id",
                            "at": "$attempt",
                            "sc": "$category_scores",
                        }
                    },
                ],
            }
        },
        {"$group": {"_id": "$a", "items": {"$push": "$$ROOT"}}},
        {"$project": {"vs": _versions_of_artifact()}},
        # audits of artifacts filtered out by type (or of none) leave no versions
        {"$match": {"vs.0": {"$exists": True}}},
        {
            "$project": {
                "t": {"$first": _field("t")},
                "first": {"$first": "$vs"},
                "versions": {"$size": "$vs"},
                "to_pass": {
                    "$min": {
                        "$map": {
                            "input": {
                                "$filter": {"input": "$vs", "cond": {"$eq": ["$$this.s", "passed"]}}
                            },
                            "in": "$$this.n",
                        }
                    }
                },
                "approved_at": {"$min": _field("ap")},
                "rounds": _rounds(),
            }
        },
        *([{"$match": {"first.c": window}}] if window else []),
        {
            "$project": {
                "t": 1,
                "versions": 1,
                "to_pass": 1,
                "rounds": 1,
                "week": {
                    "$dateTrunc": {"date": "$first.c", "unit": "week", "startOfWeek": "monday"}
                },
                "first_judged": {"$in": ["$first.s", VERDICTS]},
                "first_passed": {"$eq": ["$first.s", "passed"]},
                "approval_ms": {
                    "$cond": [
                        {"$eq": [{"$type": "$approved_at"}, "date"]},
                        {"$subtract": ["$approved_at", "$first.c"]},
                        None,
                    ]
                },
            }
        },
        {
            "$facet": {
                "by_type": [_totals("$t")],
                "by_week": [_totals({"t": "$t", "week": "$week"})],
                "to_pass": [
                    {"$match": {"to_pass": {"$ne": None}}},
                    {"$group": {"_id": {"t": "$t", "n": "$to_pass"}, "artifacts": {"$sum": 1}}},
                ],
                "rounds": [
                    {"$unwind": "$rounds"},
                    {
                        "$group": {
                            "_id": {"t": "$t", "r": "$rounds.r", "k": "$rounds.k"},
                            "rounds": {"$sum": 1},
                            "change_sum": {"$sum": "$rounds.d"},
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
