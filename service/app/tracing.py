"""Traces of what the ledger does with each event (OpenTelemetry), and their no-op path.

What a trace shows:
- one span per consumed record, `ledger event <type>`, whose parent is the trace context
  the producer sent (CloudEvents Distributed Tracing: the `traceparent` / `tracestate`
  attributes, `ce_traceparent` headers, or a plain W3C `traceparent` header in binary mode);
  a record without one starts a new trace. It carries the campaign id, the event type, the
  outcome (`applied`, `duplicate`, `held`, `dead_lettered` with `ledger.reason`) and the
  campaign's revision once the batch is applied;
- one span per batch, `ledger batch`, linked to every record's span (a batch serves many
  traces), with a child span per phase: `load`, `rules`, `write`, `commit`, `publish`. When
  every traced record of the batch belongs to one trace (live traffic: most batches hold one
  event), the batch span is a child of that trace's first record span, so the trace of an
  event shows the batch and its phases under it; otherwise it is a trace of its own;
- the snapshots and dead letters a batch publishes carry the batch span's `traceparent` as a
  CloudEvents attribute (`trace_attributes`), so whoever consumes them continues its trace;
- a held event attached when its version comes gets a span `ledger attach <type>` in the trace
  it arrived with (the held record keeps its value and headers, hence its trace context),
  linked to the batch that attached it; one dead-lettered as `held_too_long` gets
  `ledger held expired <type>` there, linked to the sweep that expired it.

Tracing is off unless `service.adapters.otel` found an exporter at start-up. Off, the hooks
cost one check per batch (`_CURRENT` holds no trace) and no span object is ever made, so
the per-event CPU does not move. On, the spans are made from the timings the batch records
anyway (the phase spans get explicit start and end times), so the batch's code keeps no
tracing logic of its own: it calls `begin`, `outcomes`, `phases` and `trace_attributes`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import orjson
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from service.domain.ledger import made_by

if TYPE_CHECKING:
    from service.domain.ingest import RawRecord, Rejection
    from service.domain.ledger import Changes, Inbound, View

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")

_PROPAGATOR = TraceContextTextMapPropagator()
_NO_ATTRIBUTES: dict[str, str] = {}
# Header names a binary-mode record may carry its trace context in (read case-insensitively).
_TRACE_HEADERS = {
    "ce_traceparent": "traceparent",
    "ce_tracestate": "tracestate",
    "traceparent": "traceparent",
    "tracestate": "tracestate",
}
# Attribute names: CloudEvents and messaging semantic conventions where they exist.
CAMPAIGN_ID = "ledger.campaign_id"
OUTCOME = "ledger.outcome"
REASON = "ledger.reason"
REVISION = "ledger.revision"

_tracer: Tracer | None = None


def enable(tracer: Tracer) -> None:
    """Make spans from now on (service.adapters.otel, when an exporter is configured)."""
    global _tracer  # noqa: PLW0603 - one tracer per process, set at start-up
    _tracer = tracer


def disable() -> None:
    global _tracer  # noqa: PLW0603
    _tracer = None


def enabled() -> bool:
    return _tracer is not None


class _Trace:
    """The spans of one batch (or one maintenance sweep) while it runs."""

    def __init__(self, tracer: Tracer, name: str, *, sweep: bool = False) -> None:
        self.tracer = tracer
        self.name = name
        self.is_sweep = sweep
        self.start_ns = time.time_ns()
        self.start_perf = time.perf_counter()
        self.span: Span | None = None  # the batch's span, once `begin` knows its records
        self.traceparent: dict[str, str] = _NO_ATTRIBUTES
        self.records: dict[int, tuple[RawRecord, Span]] = {}  # id(record) -> its span
        self.results: dict[int, tuple[str, str | None, int | None]] = {}
        self.attached: dict[int, Inbound] = {}  # held events attached by this batch
        self.rejections: Sequence[Rejection] = ()
        self.noted: dict[int, Rejection] = {}  # records dead-lettered by a sweep

    # ---- building -------------------------------------------------------------------

    def begin(self, inbound: Sequence[Inbound], rejections: Sequence[Rejection]) -> None:
        tracer = self.tracer
        traces: set[int] = set()
        first: Span | None = None
        for item in inbound:
            event = item.event
            # A decoded event has its attributes already; only a plain W3C header is left.
            parent = _context(event.traceparent, event.tracestate) or _record_context(
                item.record, headers_only=True
            )
            span = tracer.start_span(
                f"ledger event {event.type.value}",
                context=parent,
                kind=SpanKind.CONSUMER,
                start_time=self.start_ns,
            )
            # Attributes only for a span that is kept: with 1 % sampling, 99 in 100 are not.
            if span.is_recording():
                span.set_attributes(
                    {
                        CAMPAIGN_ID: event.campaign_id,
                        "cloudevents.event_type": event.type.value,
                        "cloudevents.event_id": event.id,
                        "cloudevents.event_source": event.source,
                        **_record_attributes(item.record),
                    }
                )
            first = self._add(item.record, span, parent, traces, first)
        for rejection in rejections:
            parent = _record_context(rejection.record)
            span = tracer.start_span(
                "ledger event",
                context=parent,
                kind=SpanKind.CONSUMER,
                start_time=self.start_ns,
                attributes=_record_attributes(rejection.record),
            )
            first = self._add(rejection.record, span, parent, traces, first)
        # `process()` appends records refused by MongoDB to this same list later on.
        self.rejections = rejections
        parent_span = first if len(traces) == 1 else None
        # Linked to every record's span but its parent (Jaeger would show that one as a
        # link, not as the parent).
        links = [
            Link(span.get_span_context())
            for _, span in self.records.values()
            if span is not parent_span and span.is_recording()
        ]
        parent_context = trace.set_span_in_context(parent_span) if parent_span else None
        self.span = tracer.start_span(
            "ledger batch",
            context=parent_context or Context(),
            kind=SpanKind.CONSUMER,
            start_time=self.start_ns,
            links=links,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.batch.message_count": len(self.records),
            },
        )
        batch = self.span.get_span_context()
        for _, span in self.records.values():
            if span is not parent_span and span.is_recording():  # its child needs no link
                span.add_link(batch)
        self.traceparent = _traceparent(batch)
        OUTBOUND.set(self.traceparent)

    def _add(
        self,
        record: RawRecord,
        span: Span,
        parent: Context | None,
        traces: set[int],
        first: Span | None,
    ) -> Span | None:
        self.records[id(record)] = (record, span)
        if parent is not None:
            traces.add(span.get_span_context().trace_id)
            return first or span
        return first

    def sweep(self) -> None:
        """A maintenance sweep's span, begun when it first dead-letters something (a sweep
        that finds nothing to do, the usual case, leaves no trace)."""
        self.span = self.tracer.start_span(self.name, start_time=self.start_ns)
        self.traceparent = _traceparent(self.span.get_span_context())

    def phase(self, name: str, start: float, end: float) -> None:
        if self.span is None:
            return
        span = self.tracer.start_span(
            name, context=trace.set_span_in_context(self.span), start_time=self._ns(start)
        )
        span.end(end_time=self._ns(end))

    def _ns(self, perf: float) -> int:
        return self.start_ns + int((perf - self.start_perf) * 1e9)

    def outcomes(self, inbound: Sequence[Inbound], changes: Changes, view: View) -> None:
        """What the rules decided for each event (recorded; the spans get it at the end, so
        a transaction run again after a conflict leaves only its last decision)."""
        held = {id(h.inbound.record) for h in changes.held}
        refused = {id(r.inbound.record): r.reason for r in changes.rejections}
        # Events taken (not duplicates): those marked processed, and those whose new
        # version is their mark (the rules write no mark beside it).
        processed = {key for key, _ in changes.processed}
        processed.update(made_by(doc) for doc in changes.inserts.get("version", ()))
        seen: set[str] = set()
        for item in inbound:
            key, record = item.event.key, id(item.record)
            if key not in processed or key in seen:
                outcome, reason = "duplicate", None
            elif record in refused:
                outcome, reason = "dead_lettered", refused[record]
            elif record in held:
                outcome, reason = "held", None
            else:
                outcome, reason = "applied", None
            seen.add(key)
            self.results[record] = (outcome, reason, _revision(changes, view, item))
        if changes.released:
            released = set(changes.released)
            for waiting in view.held.values():
                for held_event in waiting:
                    if held_event.key in released:
                        record = id(held_event.inbound.record)
                        self.attached[record] = held_event.inbound
                        self.results[record] = (
                            "dead_lettered" if record in refused else "applied",
                            refused.get(record),
                            _revision(changes, view, held_event.inbound),
                        )

    # ---- ending ---------------------------------------------------------------------

    def finish(self, result: Any, error: BaseException | None) -> None:
        end = time.time_ns()
        for rejection in self.rejections:
            self.results[id(rejection.record)] = ("dead_lettered", rejection.reason, None)
        for record_id, (_record, span) in self.records.items():
            if span.is_recording():
                self._conclude(span, record_id, error)
                span.end(end_time=end)
        for record_id, inbound in self.attached.items():
            event = inbound.event
            span = self.tracer.start_span(
                f"ledger attach {event.type.value}",
                context=_context(event.traceparent, event.tracestate)
                or _record_context(inbound.record, headers_only=True),
                kind=SpanKind.CONSUMER,
                start_time=self.start_ns,
                links=[Link(self.span.get_span_context())] if self.span else None,
                attributes={
                    CAMPAIGN_ID: event.campaign_id,
                    "cloudevents.event_type": event.type.value,
                    "cloudevents.event_id": event.id,
                    **_record_attributes(inbound.record),
                },
            )
            self._conclude(span, record_id, error)
            span.end(end_time=end)
        for rejection in self.noted.values():
            record = rejection.record
            span = self.tracer.start_span(
                f"ledger dead-lettered {_event_type(record) or 'event'}",
                context=_record_context(record),
                start_time=self.start_ns,
                links=[Link(self.span.get_span_context())] if self.span else None,
                attributes={
                    OUTCOME: "dead_lettered",
                    REASON: rejection.reason,
                    **_record_attributes(record),
                },
            )
            span.end(end_time=end)
        if self.span is not None:
            if result is not None:
                for name in ("records", "applied", "duplicates", "held", "rejected", "revisions"):
                    value = getattr(result, name, None)
                    if isinstance(value, int):
                        self.span.set_attribute(f"ledger.batch.{name}", value)
            if error is not None:
                self.span.record_exception(error)
                self.span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            self.span.end(end_time=end)

    def _conclude(self, span: Span, record_id: int, error: BaseException | None) -> None:
        decided = self.results.get(record_id)
        if decided is not None:
            outcome, reason, revision = decided
            span.set_attribute(OUTCOME, outcome)
            if reason is not None:
                span.set_attribute(REASON, reason)
            if revision is not None:
                span.set_attribute(REVISION, revision)
        if error is not None:
            # Nothing was committed: the batch comes again.
            span.set_status(Status(StatusCode.ERROR, f"batch failed: {type(error).__name__}"))


_CURRENT: ContextVar[_Trace | None] = ContextVar("ledger_trace", default=None)
# The attributes a snapshot built now carries: the batch's `traceparent`, or none. A snapshot
# event reads it directly (`**OUTBOUND.get()`, no call of ours: it runs once per revision).
OUTBOUND: ContextVar[dict[str, str]] = ContextVar("ledger_outbound_trace", default=_NO_ATTRIBUTES)
_Method = Callable[Concatenate[S, P], Awaitable[R]]


def traced_batch(
    method: Callable[Concatenate[S, P], Awaitable[R]],
) -> Callable[Concatenate[S, P], Awaitable[R]]:
    """Decorates the batch: spans for it while tracing is on, nothing else when off."""
    return _traced(method, "ledger batch", sweep=False)


def traced_sweep(name: str) -> Callable[[_Method[S, P, R]], _Method[S, P, R]]:
    """Decorates a maintenance sweep whose dead letters should carry a trace context."""

    def decorate(method: _Method[S, P, R]) -> _Method[S, P, R]:
        return _traced(method, name, sweep=True)

    return decorate


def _traced(
    method: Callable[Concatenate[S, P], Awaitable[R]], name: str, *, sweep: bool
) -> Callable[Concatenate[S, P], Awaitable[R]]:
    @functools.wraps(method)
    async def run(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        tracer = _tracer
        if tracer is None:
            return await method(self, *args, **kwargs)
        current = _Trace(tracer, name, sweep=sweep)
        token, outbound = _CURRENT.set(current), OUTBOUND.set(_NO_ATTRIBUTES)
        try:
            result = await method(self, *args, **kwargs)
        except BaseException as error:
            current.finish(None, error)
            raise
        finally:
            OUTBOUND.reset(outbound)
            _CURRENT.reset(token)
        if current.span is not None:  # a sweep that dead-lettered nothing leaves no trace
            current.finish(result, None)
        return result

    return run


# ---- hooks the batch calls ---------------------------------------------------------------


def begin(inbound: Sequence[Inbound], rejections: Sequence[Rejection]) -> None:
    """The batch's records are decoded: their spans and the batch span begin."""
    current = _CURRENT.get()
    if current is not None:
        current.begin(inbound, rejections)


def outcomes(inbound: Sequence[Inbound], changes: Changes, view: View) -> None:
    current = _CURRENT.get()
    if current is not None:
        current.outcomes(inbound, changes, view)


def phases(start: float, **ends: float) -> None:
    """Phase spans from `time.perf_counter()` readings: each phase ends where the next
    begins, in the order given (`phases(t0, load=t1, rules=t2)`)."""
    current = _CURRENT.get()
    if current is None:
        return
    for name, end in ends.items():
        current.phase(name, start, end)
        start = end


def trace_attributes(rejection: Rejection | None = None) -> dict[str, str]:
    """The CloudEvents attributes an outbound event carries: the current batch's (or
    sweep's) `traceparent`; none when tracing is off. `rejection`: what a dead letter is
    about, so that a sweep marks it in the trace its record arrived with."""
    current = _CURRENT.get()
    if current is None:
        return _NO_ATTRIBUTES
    if current.is_sweep and rejection is not None:
        if current.span is None:
            current.sweep()
        current.noted[id(rejection.record)] = rejection
    return current.traceparent


# ---- trace contexts ----------------------------------------------------------------------


def _context(traceparent: str | None, tracestate: str | None) -> Context | None:
    if traceparent is None:
        return None
    carrier = {"traceparent": traceparent}
    if tracestate is not None:
        carrier["tracestate"] = tracestate
    context = _PROPAGATOR.extract(carrier)
    span_context = trace.get_current_span(context).get_span_context()
    return context if span_context.is_valid else None


def _record_context(record: RawRecord, *, headers_only: bool = False) -> Context | None:
    """A record's trace context when its event was not decoded (refused, or held and read
    back): its headers, else the attributes of a structured-mode value."""
    found: dict[str, str] = {}
    for name, raw in record.headers:
        attribute = _TRACE_HEADERS.get(name.lower())
        if attribute is not None and attribute not in found:
            try:
                found[attribute] = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue
    if "traceparent" not in found and not headers_only:
        document = _structured(record)
        for attribute in ("traceparent", "tracestate"):
            value = document.get(attribute)
            if isinstance(value, str):
                found[attribute] = value
    return _context(found.get("traceparent"), found.get("tracestate"))


def _structured(record: RawRecord) -> dict[str, Any]:
    if record.binary_mode or not record.value:
        return {}
    try:
        document = orjson.loads(record.value)
    except orjson.JSONDecodeError:
        return {}
    return document if isinstance(document, dict) else {}


def _event_type(record: RawRecord) -> str | None:
    for name, raw in record.headers:
        if name.lower() == "ce_type":
            return raw.decode("utf-8", "replace")
    value = _structured(record).get("type")
    return value if isinstance(value, str) else None


def _record_attributes(record: RawRecord) -> dict[str, str | int]:
    return {
        "messaging.system": "kafka",
        "messaging.destination.name": record.topic,
        "messaging.destination.partition.id": str(record.partition),
        "messaging.kafka.offset": record.offset,
    }


def _traceparent(context: SpanContext) -> dict[str, str]:
    value = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    attributes = {"traceparent": value}
    if context.trace_state:
        attributes["tracestate"] = context.trace_state.to_header()
    return attributes


def _revision(changes: Changes, view: View, item: Inbound) -> int | None:
    """The campaign's revision once the batch is applied (events that change nothing share
    it with the one before them)."""
    campaign_id = item.event.campaign_id
    state = changes.campaigns.get(campaign_id)
    if state is None:
        state = view.campaigns.get(campaign_id)
    return state.revision if state is not None else None
