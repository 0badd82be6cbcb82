"""Reads for the trace page: where the events of one trace id came from (core/provenance.py writes the record when an
RPC call or a listener publishes). One Redis read, and one SQL query for an API client's name."""
from __future__ import annotations

from dataclasses import dataclass, field

from core import provenance

from .selectors import client_names


@dataclass(frozen=True)
class TracedEvent:
    channel: str
    seq: int | None  # None: the event waited in the publisher's retry queue when the record was written


@dataclass(frozen=True)
class TraceProvenance:
    trace_id: str
    origin: str  # "rpc" or "listener"
    at: float
    uid: str | None
    events: list[TracedEvent]
    event_count: int  # the record keeps the first provenance.EVENTS_KEPT
    # origin "rpc"
    method: str | None = None
    client: str | None = None  # the API client's name, "service token", or its scope when the row is gone
    code: str | None = None
    duration_ms: float | None = None
    settled_late: bool = False  # answered TIMEOUT, then the run finished: this is what it really did
    # origin "listener"
    worker: str | None = None
    kind: str | None = None
    event_type: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.code in ("OK", "REPLAYED") if self.origin == "rpc" else True


def trace_provenance(trace_id: str) -> TraceProvenance | None:
    """The record of ``trace_id``, or None: never written (the trace published nothing) or expired."""
    record = provenance.read(trace_id)
    if not record:
        return None
    scope = record.get("client")
    client = client_names({scope}).get(scope, scope) if scope else None
    return TraceProvenance(
        trace_id=trace_id, origin=str(record.get("origin", "?")), at=float(record.get("at", 0)),
        uid=record.get("uid"),
        events=[TracedEvent(str(channel), seq) for channel, seq in record.get("events", [])],
        event_count=int(record.get("event_count", 0)),
        method=record.get("method"), client=client, code=record.get("code"), duration_ms=record.get("duration_ms"),
        settled_late=bool(record.get("settled_late")), worker=record.get("worker"), kind=record.get("kind"),
        event_type=record.get("type"),
    )
