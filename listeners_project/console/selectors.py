"""Reads for the console pages: charts from the activity series, the RPC panel, workers and processes, a channel's
history. Redis reads are pipelined; SQL is at most one query per page whatever the number of rows."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Sum
from django.urls import reverse
from django.utils.safestring import SafeString

from core import activity
from core.integrations.redis import get_redis
from listeners_project.processes import ProcessInfo, list_processes
from realtime.channels import history_key, seq_key
from rpc.models import ApiClient
from workflows import ownership
from workflows.models import ListenerState

from .sparkline import sparkline

# (series, label, gauge?, the page its card links to)
_CHARTS = (
    (activity.RPC_CALLS, "RPC calls", False, "admin:console-rpc"),
    (activity.RPC_ERRORS, "RPC errors", False, "admin:console-rpc"),
    (activity.EVENTS, "Events published", False, "admin:console-events"),
    (activity.SOCKETS, "Open sockets", True, "admin:console-workers"),
    (activity.USERS_ONLINE, "Users online", True, "admin:registry_session_changelist"),
    (activity.LISTENER_RESTARTS, "Listener restarts", False, "admin:workflows_listenerstate_changelist"),
)
_MAX_HISTORY_READ = 1000


@dataclass(frozen=True)
class Chart:
    name: str
    label: str
    gauge: bool
    href: str
    last15: int  # a counter's total over 15 minutes, a gauge's latest sample
    last60: int
    svg15: SafeString
    svg60: SafeString


def charts(window: activity.Minutes) -> list[Chart]:
    rows = []
    for name, label, gauge, url_name in _CHARTS:
        values = window.series(name)
        recent = values[-15:]
        rows.append(Chart(
            name=name, label=label, gauge=gauge, href=reverse(url_name),
            last15=values[-1] if gauge else sum(recent), last60=max(values) if gauge else sum(values),
            svg15=sparkline(recent, label=label), svg60=sparkline(values, label=label),
        ))
    return rows


# --- RPC panel -------------------------------------------------------------------------------------------------------
@dataclass
class Tally:
    key: str
    calls: int = 0
    errors: int = 0

    @property
    def error_rate(self) -> str:
        return f"{self.errors / self.calls:.0%}" if self.calls else "—"


@dataclass(frozen=True)
class RpcWindow:
    minutes: int
    calls: int
    errors: int
    by_method: list[Tally]
    by_code: list[Tally]
    by_client: list[Tally]


def client_names(scopes: set[str]) -> dict[str, str]:
    """API client scopes ("c{pk}", rpc/auth.py) to names, in one query; the service token is "service"."""
    ids = [int(scope[1:]) for scope in scopes if scope[:1] == "c" and scope[1:].isdigit()]
    names = {f"c{pk}": name for pk, name in ApiClient.objects.filter(pk__in=ids).values_list("pk", "name")}
    return {"svc": "service token", "anonymous": "(not authenticated)", **names}


def _tallies(counts: list[activity.CallCount], key: Any) -> list[Tally]:
    table: dict[str, Tally] = {}
    for count in counts:
        row = table.setdefault(key(count), Tally(key(count)))
        row.calls += count.count
        row.errors += count.count if count.failed else 0
    return sorted(table.values(), key=lambda row: (-row.errors, -row.calls, row.key))


def rpc_windows(window: activity.Minutes, *, spans: tuple[int, ...] = (5, 60)) -> list[RpcWindow]:
    per_span = {span: window.calls(last=span) for span in spans}
    names = client_names({count.client for counts in per_span.values() for count in counts})
    result = []
    for span, counts in per_span.items():
        result.append(RpcWindow(
            minutes=span, calls=sum(c.count for c in counts), errors=sum(c.count for c in counts if c.failed),
            by_method=_tallies(counts, lambda c: c.method), by_code=_tallies(counts, lambda c: c.code),
            by_client=_tallies(counts, lambda c: names.get(c.client, c.client)),
        ))
    return result


def client_activity(window: activity.Minutes, scope: str, *, last: int = 60) -> Tally:
    counts = [count for count in window.calls(last=last) if count.client == scope]
    return _tallies(counts, lambda c: scope)[0] if counts else Tally(scope)


def recent_failures(limit: int = 50) -> list[dict[str, Any]]:
    failures = activity.recent_failures(limit=limit)
    names = client_names({failure.get("client") or "" for failure in failures})
    return [{**failure, "client": names.get(failure.get("client"), failure.get("client"))} for failure in failures]


# --- workers ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ListenersWorker:
    worker_id: str
    alive: bool
    subscribed: bool
    heartbeat_at: float | None
    users: int
    ready_users: int
    streams: int
    connections: int
    rows: int  # ListenerState rows (users) it reports in SQL
    restarts: int

    @property
    def state(self) -> str:
        return "alive" if self.alive and self.subscribed else "stale" if self.alive else "dead"


def listeners_workers() -> list[ListenersWorker]:
    """Every registered listeners worker: liveness and stats from Redis (ownership's registry, two round trips plus
    one), users and restarts from its ListenerState rows (one query)."""
    liveness = ownership.worker_liveness()
    pipe = get_redis().pipeline(transaction=False)
    for worker_id in liveness:
        pipe.hgetall(ownership.stats_key(worker_id))
    stats = dict(zip(liveness, pipe.execute())) if liveness else {}
    rows = {row["worker_id"]: row for row in ListenerState.objects.values("worker_id").order_by()
            .annotate(rows=Count("pk"), restarts=Sum("restarts"))}
    workers = []
    for worker_id in sorted(set(liveness) | set(rows)):
        fields = {name.decode(): value.decode() for name, value in stats.get(worker_id, {}).items()}
        alive, subscribers = liveness.get(worker_id, (False, 0))
        row = rows.get(worker_id, {})
        workers.append(ListenersWorker(
            worker_id=worker_id, alive=alive, subscribed=subscribers > 0,
            heartbeat_at=float(fields["heartbeat_at"]) if "heartbeat_at" in fields else None,
            users=int(fields.get("users", 0)), ready_users=int(fields.get("ready_users", 0)),
            streams=int(fields.get("firestore_streams", 0)), connections=int(fields.get("firestore_connections", 0)),
            rows=row.get("rows", 0), restarts=row.get("restarts") or 0,
        ))
    return workers


def asgi_processes() -> list[ProcessInfo]:
    return list_processes()


# --- event viewer ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EventRow:
    seq: int
    type: str
    timestamp: str | None
    trace_id: str | None
    event_id: str | None
    payload: str


@dataclass(frozen=True)
class ChannelEvents:
    channel: str
    seq: int  # the channel's latest sequence number (0: nothing published, or expired)
    epoch: str | None
    events: list[EventRow] = field(default_factory=list)
    types: list[str] = field(default_factory=list)  # the types seen in the history read, for the filter


def channel_events(channel: str, *, type_prefix: str = "", after: int | None = None, limit: int = 100) -> ChannelEvents:
    """The channel's history (realtime/publisher.py keeps the last LISTENERS_HISTORY_SIZE events for
    LISTENERS_HISTORY_TTL s), newest first; or, for the live tail, the events after ``after``, oldest first. Only
    types starting with ``type_prefix``."""
    pipe = get_redis().pipeline(transaction=False)
    pipe.hmget(seq_key(channel), "n", "epoch")
    if after is None:
        pipe.xrevrange(history_key(channel), count=_MAX_HISTORY_READ)
    else:
        pipe.xrange(history_key(channel), min=f"({after}-0", count=_MAX_HISTORY_READ)
    (seq, epoch), entries = pipe.execute()
    rows = [_event_row(entry_id, fields) for entry_id, fields in entries]
    types = sorted(Counter(row.type for row in rows))
    shown = [row for row in rows if row.type.startswith(type_prefix)][:limit]
    return ChannelEvents(channel, int(seq or 0), epoch.decode() if epoch else None, shown, types)


def _event_row(entry_id: bytes, fields: dict[bytes, bytes]) -> EventRow:
    raw = fields.get(b"m", b"{}")
    try:
        event = json.loads(raw)
    except ValueError:
        event = {}
    payload = event.get("payload")
    return EventRow(
        seq=int(entry_id.split(b"-")[0]), type=str(event.get("type", "?")), timestamp=event.get("timestamp"),
        trace_id=event.get("trace_id"), event_id=event.get("event_id"),
        payload=json.dumps(payload, ensure_ascii=False, sort_keys=True)[:500] if payload is not None else "",
    )
