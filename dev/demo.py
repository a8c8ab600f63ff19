"""A demo producer: sends a realistic campaign flow to campaign-ledger's input topics.

    python -m dev.demo --bootstrap 127.0.0.1:9092 [--campaigns 1] [--delay 0.3]
                       [--http http://127.0.0.1:8080] [--token TOKEN]

Per campaign: the campaign is created and set to `generating`, a run starts, and three
artifacts (`copy`, `short_copy`, `visual_concept`) are generated in parallel. Each version is
audited; a version that does not pass gets reviewer feedback and is regenerated (with
`parent_version_id` and `feedback_id`), two or three rounds until it passes. One audit attempt
ends in `error` and is retried. Then an old version is archived, the final version of each
artifact approved, the run completed and the campaign set to `completed`.

Every value is a CloudEvents 1.0 structured JSON object (header `content-type:
application/cloudevents+json`), keyed by the campaign id, sent to the topics the service reads
(`TOPIC_ARTIFACT_GENERATED`, `TOPIC_AUDIT_COMPLETED`, `TOPIC_FEEDBACK`, `TOPIC_LIFECYCLE`, with
the contract's defaults). Kafka security comes from the service's own `KAFKA_*` variables.

With `--http`, the demo then polls `GET {http}/campaigns/{id}/snapshot` until the snapshot
shows what was sent, and prints it. Exit codes: 0 success, 1 the snapshot never matched (or
the service could not be asked), 2 Kafka could not be reached or refused an event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import ssl
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

CONTENT_TYPE = "application/cloudevents+json"
SOURCE = "urn:campaign-ledger:demo"  # + ":" + the sending role, e.g. ":audit-agent"

TOPIC_DEFAULTS = {
    "TOPIC_ARTIFACT_GENERATED": "campaign.artifact-generated",
    "TOPIC_AUDIT_COMPLETED": "campaign.audit-completed",
    "TOPIC_FEEDBACK": "campaign.feedback",
    "TOPIC_LIFECYCLE": "campaign.lifecycle",
}


@dataclass(frozen=True)
class Topics:
    artifact_generated: str
    audit_completed: str
    feedback: str
    lifecycle: str

    @classmethod
    def from_env(cls) -> Topics:
        def get(name: str) -> str:
            return os.environ.get(name) or TOPIC_DEFAULTS[name]

        return cls(
            artifact_generated=get("TOPIC_ARTIFACT_GENERATED"),
            audit_completed=get("TOPIC_AUDIT_COMPLETED"),
            feedback=get("TOPIC_FEEDBACK"),
            lifecycle=get("TOPIC_LIFECYCLE"),
        )


def now() -> str:
    """The current UTC time, RFC 3339 with a `Z`."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---- what the campaigns say ------------------------------------------------------------


@dataclass(frozen=True)
class Theme:
    slug: str
    name: str
    product: str
    audience: str
    offer: str
    channels: tuple[str, ...]
    launch: str


THEMES: tuple[Theme, ...] = (
    Theme(
        slug="spring-launch",
        name="Spring launch: Aurora Trail 2",
        product="Aurora Trail 2",
        audience="weekend trail runners, 25-45, who run in the rain",
        offer="free returns for 60 days",
        channels=("email", "paid_social", "in_store"),
        launch="2026-03-20",
    ),
    Theme(
        slug="summer-refresh",
        name="Summer refresh: Tidewater cold brew",
        product="Tidewater Cold Brew",
        audience="commuters who buy coffee on the way to work",
        offer="the first four-pack at half price",
        channels=("paid_social", "out_of_home"),
        launch="2026-06-01",
    ),
    Theme(
        slug="back-to-school",
        name="Back to school: Lumen study lamp",
        product="Lumen Desk Lamp",
        audience="parents of students aged 12-18",
        offer="a second lamp at 30% off",
        channels=("email", "search", "retail_media"),
        launch="2026-08-15",
    ),
)


def brief_of(theme: Theme) -> dict[str, Any]:
    return {
        "objective": f"Drive pre-orders of {theme.product} in the launch month",
        "product": theme.product,
        "audience": theme.audience,
        "key_message": f"{theme.product} is built for the conditions you actually face",
        "offer": theme.offer,
        "channels": list(theme.channels),
        "tone": ["confident", "warm", "plain-spoken"],
        "mandatories": ["show the offer end date", "no unverifiable superlatives"],
        "launch_date": theme.launch,
        "budget": {"amount": 120000, "currency": "EUR"},
    }


def copy_content(theme: Theme, version: int) -> dict[str, Any]:
    p, offer = theme.product, theme.offer
    drafts = (
        {
            "headline": f"{p}: the best you will ever own. Guaranteed.",
            "body": f"Nothing else comes close. {p} beats every rival on every count, "
            f"and science proves it. Order now and get {offer}.",
            "cta": "Buy now",
        },
        {
            "headline": f"Meet {p}. Made for real mornings.",
            "body": f"Designed with the people who use it every day, {p} handles the "
            f"conditions you actually face. Pre-order today and enjoy {offer}.",
            "cta": "Pre-order",
        },
        {
            "headline": f"{p}. Ready when you are.",
            "body": f"Tested by people like you, in all weathers. {p} keeps up without "
            f"asking for attention. Pre-order by 30 April and enjoy {offer}.",
            "cta": "Pre-order yours",
        },
    )
    draft = drafts[min(version, len(drafts)) - 1]
    words = len(f"{draft['headline']} {draft['body']}".split())
    return {**draft, "language": "en-GB", "word_count": words, "channel": "email"}


def short_copy_content(theme: Theme, version: int) -> dict[str, Any]:
    p = theme.product
    lines = (
        (f"{p}. Unbeatable. #1 guaranteed!!!", "#1 guaranteed"),
        (f"{p}: made for your real mornings. Pre-order now.", "made for you"),
        (f"Your mornings, sorted. {p}, pre-order today.", "mornings sorted"),
    )
    text, hook = lines[min(version, len(lines)) - 1]
    return {
        "variants": [
            {"channel": "paid_social", "text": text, "characters": len(text)},
            {"channel": "push", "text": text[:60], "characters": min(len(text), 60)},
        ],
        "hook": hook,
        "hashtags": [f"#{p.replace(' ', '')}"],
        "language": "en-GB",
    }


def visual_concept_content(theme: Theme, version: int) -> dict[str, Any]:
    p = theme.product
    concepts = (
        {
            "title": "Studio hero",
            "description": f"{p} floating on a seamless white backdrop, hard rim light, no people.",
            "palette": ["#FFFFFF", "#101820", "#FF6F61"],
        },
        {
            "title": "Real morning",
            "description": f"A person in soft early light reaching for {p}; "
            "rain on the window, shallow depth of field.",
            "palette": ["#2E4057", "#F2E8CF", "#FF6F61"],
        },
        {
            "title": "Real morning, brand-true",
            "description": f"Same scene as 'Real morning', {p} in the lower third, logo "
            "bottom right, offer end date legible at mobile size.",
            "palette": ["#2E4057", "#F2E8CF", "#E4572E"],
        },
    )
    concept = concepts[min(version, len(concepts)) - 1]
    return {
        **concept,
        "aspect_ratios": ["1:1", "4:5", "9:16"],
        "composition": "rule of thirds, product in focus, text-safe area top 20%",
        "mood": ["honest", "calm", "optimistic"],
        "alt_text": f"{p} in everyday use",
    }


CONTENT = {
    "copy": copy_content,
    "short_copy": short_copy_content,
    "visual_concept": visual_concept_content,
}

AGENTS = {
    "copy": "copywriter-agent",
    "short_copy": "social-copy-agent",
    "visual_concept": "art-director-agent",
}

# What the reviewer says about a version that did not pass, by artifact and version number.
FEEDBACK: dict[tuple[str, int], dict[str, Any]] = {
    ("copy", 1): {
        "feedback_text": "Drop 'the best you will ever own' and 'science proves it': we cannot "
        "substantiate either. Lead with real-world use instead.",
        "tags": ["compliance", "claims"],
        "rationale": "Unverifiable superlatives breach the brief's mandatories.",
    },
    ("copy", 2): {
        "feedback_text": "Better. Add the offer end date and make the CTA more personal.",
        "tags": ["mandatories", "cta"],
        "rationale": "The offer end date is a mandatory; 'Pre-order' alone reads cold.",
    },
    ("short_copy", 1): {
        "feedback_text": "No '#1 guaranteed' and no triple exclamation marks; keep it calm.",
        "tags": ["compliance", "brand_voice"],
        "rationale": "Ranking claims need evidence; the tone guide bans stacked punctuation.",
    },
    ("short_copy", 2): {
        "feedback_text": "Shorter hook, please: it must fit a push notification.",
        "tags": ["clarity", "length"],
        "rationale": "Push notifications truncate at about 60 characters.",
    },
    ("visual_concept", 1): {
        "feedback_text": "Too sterile for this brand. Show the product in use, in a real home.",
        "tags": ["brand_voice", "art_direction"],
        "rationale": "Brand guidelines ask for people and real settings.",
    },
    ("visual_concept", 2): {
        "feedback_text": "Keep the scene; place the logo and make the offer end date legible.",
        "tags": ["mandatories", "layout"],
        "rationale": "Logo placement and the end date are required on every paid asset.",
    },
}

REVIEWERS = ("maria.keller@brand.example", "tom.okafor@brand.example")

# Audit attempts per version, per artifact: each inner list is one version's attempts, the last
# of which decides whether feedback follows. Scripts rotate over the artifacts per campaign so
# several campaigns do not all look alike; exactly one `error` (then a retry) per campaign.
SCRIPTS: tuple[tuple[tuple[str, ...], ...], ...] = (
    (("error", "fail"), ("conditional",), ("pass",)),
    (("fail",), ("pass",)),
    (("conditional",), ("fail",), ("pass",)),
)

ARTIFACT_TYPES = ("copy", "short_copy", "visual_concept")

SCORES = {
    "pass": {"brand_voice": 91, "compliance": 98, "clarity": 89},
    "conditional": {"brand_voice": 72, "compliance": 90, "clarity": 78},
    "fail": {"brand_voice": 64, "compliance": 38, "clarity": 70},
}


def audit_details(artifact_type: str, version: int, outcome: str) -> dict[str, Any]:
    """Scores, flagged items and recommendations that fit the outcome."""
    shift = (version * 3 + len(artifact_type)) % 7 - 3  # a little variety, deterministic
    scores = {
        name: {"score": max(0, min(100, base + shift)), "rationale": f"{name} checked"}
        for name, base in SCORES[outcome].items()
    }
    flagged: list[dict[str, Any]] = []
    recommendations: list[dict[str, Any]] = []
    if outcome == "fail":
        flagged.append(
            {
                "category": "compliance",
                "severity": "high",
                "rule": "claims.unverifiable-superlative",
                "detail": "A superlative or ranking claim without substantiation.",
            }
        )
        recommendations.append(
            {"category": "compliance", "action": "Remove or substantiate the claim."}
        )
    elif outcome == "conditional":
        flagged.append(
            {
                "category": "brand_voice",
                "severity": "medium",
                "rule": "mandatories.offer-end-date",
                "detail": "The offer is shown without its end date.",
            }
        )
        recommendations.append(
            {"category": "brand_voice", "action": "State the offer end date near the CTA."}
        )
    return {
        "category_scores": scores,
        "flagged_items": flagged,
        "recommendations": recommendations,
    }


# ---- sending -----------------------------------------------------------------------------


@dataclass
class Expected:
    """What the campaign's snapshot should show once everything sent is processed."""

    versions: int = 0
    audit_reports: int = 0
    iteration_logs: int = 0
    archived_versions: int = 0
    approved_versions: int = 0
    status: str = "draft"
    runs: dict[str, str] = field(default_factory=dict)
    active: dict[str, str] = field(default_factory=dict)  # artifact id -> version id

    def counts(self) -> dict[str, int]:
        return {
            "versions": self.versions,
            "audit_reports": self.audit_reports,
            "iteration_logs": self.iteration_logs,
            "archived_versions": self.archived_versions,
            "approved_versions": self.approved_versions,
        }


class Campaign:
    """One campaign's flow, sent through a shared producer."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        topics: Topics,
        theme: Theme,
        *,
        index: int,
        delay: float,
        prefix: bool,
    ) -> None:
        self.producer = producer
        self.topics = topics
        self.theme = theme
        self.index = index
        self.delay = delay
        self.campaign_id = f"{theme.slug}-{uuid.uuid4().hex[:6]}"
        self.run_id = f"{self.campaign_id}.run-1"
        self.expected = Expected()
        self.sent = 0
        self.prefix = f"[{self.campaign_id}] " if prefix else ""

    def artifact_id(self, artifact_type: str) -> str:
        return f"{self.campaign_id}.{artifact_type}"

    def version_id(self, artifact_type: str, number: int) -> str:
        return f"{self.campaign_id}.{artifact_type}.v{number}"

    async def emit(
        self, topic: str, role: str, event_type: str, data: dict[str, Any], line: str
    ) -> str:
        """Send one CloudEvent, wait for the broker's ack, print a line; returns its `id`."""
        event_id = str(uuid.uuid4())
        envelope = {
            "specversion": "1.0",
            "id": event_id,
            "source": f"{SOURCE}:{role}",
            "type": event_type,
            "time": now(),
            "subject": self.campaign_id,
            "datacontenttype": "application/json",
            "data": {"campaign_id": self.campaign_id, **data},
        }
        await self.producer.send_and_wait(
            topic,
            json.dumps(envelope).encode("utf-8"),
            key=self.campaign_id.encode("utf-8"),
            headers=[("content-type", CONTENT_TYPE.encode("ascii"))],
        )
        self.sent += 1
        print(f"{self.prefix}→ {line}", flush=True)
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        return event_id

    async def lifecycle(
        self, event_type: str, data: dict[str, Any], line: str, role: str = "orchestrator"
    ) -> str:
        return await self.emit(self.topics.lifecycle, role, event_type, data, line)

    async def run(self) -> None:
        theme = self.theme
        await self.lifecycle(
            "campaign.created",
            {"name": theme.name, "brief": brief_of(theme)},
            f"campaign {self.campaign_id} created ({theme.name})",
        )
        await self.set_status("generating")
        await self.lifecycle(
            "campaign.run.started",
            {"run_id": self.run_id, "execution_mode": "parallel"},
            f"run {self.run_id} started (parallel)",
        )
        self.expected.runs[self.run_id] = "running"
        rotation = self.index % len(SCRIPTS)
        scripts = SCRIPTS[rotation:] + SCRIPTS[:rotation]
        finals = await asyncio.gather(
            *(self.artifact(a, s) for a, s in zip(ARTIFACT_TYPES, scripts, strict=True))
        )
        # Archive an old version: the first version of the artifact with the most rounds.
        longest = max(zip(ARTIFACT_TYPES, finals, strict=True), key=lambda pair: pair[1])[0]
        await self.lifecycle(
            "campaign.version.archive-requested",
            {"version_id": self.version_id(longest, 1)},
            f"{longest} v1 archived",
            role="review-dashboard",
        )
        self.expected.archived_versions += 1
        for artifact_type, final in zip(ARTIFACT_TYPES, finals, strict=True):
            await self.lifecycle(
                "campaign.version.approved",
                {"version_id": self.version_id(artifact_type, final), "approved_by": REVIEWERS[0]},
                f"{artifact_type} v{final} approved",
                role="review-dashboard",
            )
            self.expected.approved_versions += 1
        await self.lifecycle(
            "campaign.run.completed",
            {"run_id": self.run_id, "status": "completed"},
            f"run {self.run_id} completed",
        )
        self.expected.runs[self.run_id] = "completed"
        await self.set_status("completed")

    async def set_status(self, status: str) -> None:
        await self.lifecycle(
            "campaign.status-changed", {"status": status}, f"campaign status {status}"
        )
        self.expected.status = status

    async def artifact(self, artifact_type: str, script: Sequence[Sequence[str]]) -> int:
        """Generate, audit and iterate one artifact until it passes; returns its last version."""
        parent: str | None = None
        feedback_id: str | None = None
        number = 0
        for number, attempts in enumerate(script, start=1):
            version_id = self.version_id(artifact_type, number)
            await self.generate(artifact_type, number, parent, feedback_id)
            for outcome in attempts:
                await self.audit(artifact_type, number, outcome)
            if attempts[-1] == "pass":
                break
            reviewer = REVIEWERS[(number + self.index) % len(REVIEWERS)]
            feedback = FEEDBACK[(artifact_type, number)]
            feedback_id = await self.emit(
                self.topics.feedback,
                "review-dashboard",
                "campaign.feedback.submitted",
                {
                    "artifact_id": self.artifact_id(artifact_type),
                    "version_id": version_id,
                    **feedback,
                    "submitted_by": reviewer,
                    "submitted_at": now(),
                },
                f"{artifact_type} v{number} feedback from {reviewer}",
            )
            self.expected.iteration_logs += 1
            parent = version_id
        return number

    async def generate(
        self, artifact_type: str, number: int, parent: str | None, feedback_id: str | None
    ) -> None:
        data: dict[str, Any] = {
            "artifact_id": self.artifact_id(artifact_type),
            "artifact_type": artifact_type,
            "version_id": self.version_id(artifact_type, number),
            "run_id": self.run_id,
            "content": CONTENT[artifact_type](self.theme, number),
            "agent": AGENTS[artifact_type],
            "generated_at": now(),
            "metadata": {
                "model": "demo-llm-2026-01",
                "temperature": 0.7,
                "prompt_tokens": 1200 + 150 * number,
                "completion_tokens": 180 + 20 * number,
            },
        }
        if parent is not None:
            data["parent_version_id"] = parent
            data["feedback_id"] = feedback_id
        how = f" (from v{number - 1} + feedback)" if parent else ""
        await self.emit(
            self.topics.artifact_generated,
            AGENTS[artifact_type],
            "campaign.artifact.generated",
            data,
            f"{artifact_type} v{number} generated{how}",
        )
        self.expected.versions += 1
        self.expected.active[self.artifact_id(artifact_type)] = data["version_id"]

    async def audit(self, artifact_type: str, number: int, outcome: str) -> None:
        data: dict[str, Any] = {
            "version_id": self.version_id(artifact_type, number),
            "outcome": outcome,
            "auditor": "brand-audit-agent",
            "completed_at": now(),
        }
        if outcome == "error":
            data["error"] = "the scoring model timed out after 30 s; the audit will be retried"
        else:
            data.update(audit_details(artifact_type, number, outcome))
        await self.emit(
            self.topics.audit_completed,
            "audit-agent",
            "campaign.audit.completed",
            data,
            f"{artifact_type} v{number} audited: {outcome}",
        )
        self.expected.audit_reports += 1


# ---- checking ----------------------------------------------------------------------------


def mismatches(snapshot: dict[str, Any], expected: Expected) -> list[str]:
    """What the snapshot does not (yet) show of what was sent; empty when it matches."""
    problems: list[str] = []
    counts = snapshot.get("counts") or {}
    for name, want in expected.counts().items():
        # The contract requires versions, audit_reports and iteration_logs; the other counts
        # are compared only when the service reports them.
        if name in counts or name in ("versions", "audit_reports", "iteration_logs"):
            got = counts.get(name)
            if got != want:
                problems.append(f"counts.{name} is {got}, sent {want}")
    if snapshot.get("status") != expected.status:
        problems.append(f"status is {snapshot.get('status')!r}, sent {expected.status!r}")
    runs = {run.get("run_id"): run.get("status") for run in snapshot.get("runs") or []}
    for run_id, status in expected.runs.items():
        if runs.get(run_id) != status:
            problems.append(f"run {run_id} is {runs.get(run_id)!r}, sent {status!r}")
    artifacts = {a.get("artifact_id"): a for a in snapshot.get("artifacts") or []}
    for artifact_id, version_id in expected.active.items():
        active = (artifacts.get(artifact_id) or {}).get("active_version") or {}
        if active.get("version_id") != version_id:
            problems.append(
                f"{artifact_id}: active version is {active.get('version_id')!r}, "
                f"expected {version_id!r}"
            )
        elif expected.approved_versions and not active.get("approved"):
            problems.append(f"{artifact_id}: {version_id} is not approved yet")
    return problems


async def await_snapshot(
    base_url: str, token: str | None, expected: Expected, campaign_id: str, deadline: float
) -> bool:
    url = f"{base_url.rstrip('/')}/campaigns/{campaign_id}/snapshot"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    last = "no answer yet"
    snapshot: dict[str, Any] | None = None
    async with httpx.AsyncClient(timeout=5.0, headers=headers) as client:
        while True:
            try:
                response = await client.get(url)
            except httpx.HTTPError as exc:
                last = (
                    f"cannot reach the service at {base_url} ({type(exc).__name__}: {exc}); "
                    "is `campaign-ledger serve` running there?"
                )
            else:
                if response.status_code == 200:
                    snapshot = response.json()
                    problems = mismatches(snapshot, expected)
                    if not problems:
                        print(json.dumps(snapshot, indent=2, ensure_ascii=False))
                        print(f"snapshot: {url}")
                        return True
                    last = "; ".join(problems)
                elif response.status_code == 401:
                    print(
                        f"✗ {url} answered 401: the service has API_TOKENS set; "
                        "pass one with --token (or set API_TOKENS here)",
                        file=sys.stderr,
                    )
                    return False
                elif response.status_code == 404:
                    last = "the service does not know the campaign yet (404)"
                else:
                    last = f"HTTP {response.status_code}: {response.text[:200]}"
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.5)
    if snapshot is not None:
        print(json.dumps(snapshot, indent=2, ensure_ascii=False), file=sys.stderr)
    print(
        f"✗ the snapshot of {campaign_id} did not show what was sent in time: {last}\n  {url}",
        file=sys.stderr,
    )
    return False


# ---- main --------------------------------------------------------------------------------


def security_kwargs() -> dict[str, Any]:
    """The producer's security settings, from the service's own `KAFKA_*` variables."""
    protocol = os.environ.get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT"
    kwargs: dict[str, Any] = {"security_protocol": protocol}
    if protocol in {"SSL", "SASL_SSL"}:
        cafile = os.environ.get("KAFKA_SSL_CAFILE") or None
        kwargs["ssl_context"] = ssl.create_default_context(cafile=cafile)
    if protocol.startswith("SASL_"):
        kwargs["sasl_mechanism"] = os.environ.get("KAFKA_SASL_MECHANISM") or "PLAIN"
        kwargs["sasl_plain_username"] = os.environ.get("KAFKA_SASL_USERNAME") or ""
        kwargs["sasl_plain_password"] = os.environ.get("KAFKA_SASL_PASSWORD") or ""
    return kwargs


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    tokens = [t.strip() for t in os.environ.get("API_TOKENS", "").split(",") if t.strip()]
    parser = argparse.ArgumentParser(
        prog="python -m dev.demo", description="Send a realistic campaign flow to Kafka."
    )
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092)",
    )
    parser.add_argument("--campaigns", type=int, default=1, help="how many campaigns (1)")
    parser.add_argument("--delay", type=float, default=0.3, help="seconds between steps (0.3)")
    parser.add_argument(
        "--http", default=None, help="the service's base URL: check the snapshots there"
    )
    parser.add_argument(
        "--token",
        default=tokens[0] if tokens else None,
        help="bearer token for --http (default: the first of $API_TOKENS)",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the snapshots (30)"
    )
    parser.add_argument(
        "--compression",
        choices=["gzip", "snappy", "lz4", "zstd"],
        default=None,
        help="compress batches (default: none)",
    )
    args = parser.parse_args(argv)
    if args.campaigns < 1:
        parser.error("--campaigns must be at least 1")
    if args.delay < 0:
        parser.error("--delay must not be negative")
    return args


async def main_async(args: argparse.Namespace) -> int:
    topics = Topics.from_env()
    producer = AIOKafkaProducer(
        bootstrap_servers=args.bootstrap,
        client_id="campaign-ledger-demo",
        acks="all",
        enable_idempotence=True,
        compression_type=args.compression,
        request_timeout_ms=15000,
        **security_kwargs(),
    )
    started = time.monotonic()
    campaigns = [
        Campaign(
            producer,
            topics,
            THEMES[i % len(THEMES)],
            index=i,
            delay=args.delay,
            prefix=args.campaigns > 1,
        )
        for i in range(args.campaigns)
    ]
    try:
        await producer.start()
    except KafkaError as exc:
        print(f"✗ cannot connect to Kafka at {args.bootstrap}: {exc}", file=sys.stderr)
        with contextlib.suppress(Exception):
            await producer.stop()
        return 2
    try:
        print(
            f"sending to {args.bootstrap}: {topics.artifact_generated}, "
            f"{topics.audit_completed}, {topics.feedback}, {topics.lifecycle}",
            flush=True,
        )
        await asyncio.gather(*(campaign.run() for campaign in campaigns))
    except KafkaError as exc:
        print(f"✗ Kafka refused an event: {exc!r}", file=sys.stderr)
        return 2
    finally:
        await producer.stop()
    sent = sum(c.sent for c in campaigns)
    print(
        f"sent {sent} events for {len(campaigns)} campaign(s) in "
        f"{time.monotonic() - started:.1f} s: " + ", ".join(c.campaign_id for c in campaigns),
        flush=True,
    )
    if not args.http:
        return 0
    deadline = time.monotonic() + args.timeout
    results = await asyncio.gather(
        *(
            await_snapshot(args.http, args.token, c.expected, c.campaign_id, deadline)
            for c in campaigns
        )
    )
    return 0 if all(results) else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
