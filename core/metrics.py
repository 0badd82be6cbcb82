"""Every Prometheus series the gateway exports, declared in one place (served at GET /metrics).

One node runs several ASGI processes (``uvicorn --workers N``) and each counts in its own memory. With
``PROMETHEUS_MULTIPROC_DIR`` set (to an empty directory, wiped when the node starts, before any process imports
prometheus_client) every process writes its values to files there and ``exposition()`` sums them, so one scrape of
/metrics covers the node whichever process answers it (prometheus_client's multiprocess mode). The gauges say how
they combine: sockets and in-flight calls add up over live processes, users online is the same number everywhere.
"""
from __future__ import annotations

import atexit
import datetime as dt
import os
import re
import threading
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
CONTENT_TYPE = CONTENT_TYPE_LATEST

# RPC: "method" is the registered NAMESPACE.name, or "unknown" for calls that never resolved to one (bounded labels).
RPC_LATENCY = Histogram(
    "gateway_rpc_duration_seconds", "RPC latency by method, as the caller saw it (auth to response)", ["method"],
    buckets=(0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 120),
)
RPC_CALLS = Counter(
    "gateway_rpc_calls_total", "RPC calls by method and outcome code (OK, an error code, or REPLAYED)", ["method", "code"]
)
RPC_IDEMPOTENT_REPLAYS = Counter(
    "gateway_rpc_idempotent_replays_total", "Responses replayed from the idempotency store", ["method"]
)
RPC_ERRORS = Counter(
    "gateway_rpc_errors_total", "Failed RPC calls by service (the method's namespace, or unknown) and code",
    ["service", "code"],
)
RPC_IN_FLIGHT = Gauge("gateway_rpc_in_flight", "RPC method bodies currently executing (including after a TIMEOUT)",
                      multiprocess_mode="livesum")

EVENTS_PUBLISHED = Counter("gateway_events_published_total", "Events published by type", ["type"])
EVENT_PUBLISH_FAILURES = Counter("gateway_event_publish_failures_total", "Publish attempts that failed", ["stage"])
EVENTS_QUEUED = Gauge("gateway_events_queued", "Events waiting in the publisher's retry queue",
                      multiprocess_mode="livesum")
WS_CONNECTIONS = Gauge("gateway_ws_connections", "Open WebSocket connections (summed over the node's processes)",
                       multiprocess_mode="livesum")
WS_REJECTED = Counter("gateway_ws_rejected_total", "WebSocket connections refused", ["reason"])
WS_SLOW_CLOSES = Counter("gateway_ws_slow_consumer_closes_total", "Sockets closed with 4008 for not keeping up")
WS_DELIVERY_FAILURES = Counter("gateway_ws_delivery_failures_total", "Frames that could not be sent to a socket")
RECOVERIES = Counter("gateway_recover_total", "Reconnect recoveries: since-recovery ok (true) or recovery.failed (false)",
                     ["recovered"])
USERS_ONLINE = Gauge("gateway_users_online", "Users with at least one live socket or session (last sweep)",
                     multiprocess_mode="livemax")


# Unlabelled series exist from the moment they are declared, and in multiprocess mode a histogram then writes a file
# in every process that imports this module (a `manage.py migrate` before the node starts included). These two are
# built on first use instead, so only the processes that measure them (the ASGI servers) have them.
_lazy_lock = threading.Lock()
_lazy: dict[str, Histogram] = {}
_LAZY_HISTOGRAMS = {
    "gateway_pubsub_lag_seconds": (
        "Publish to dispatcher receive, from the envelope's timestamp (sampled; a skewed clock between hosts shows "
        "here too)", (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)),
    "gateway_ws_ping_rtt_seconds": (
        "WebSocket keepalive ping to its pong (listeners_project/ws_protocol.py)",
        (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 20)),
}


def _lazy_histogram(name: str) -> Histogram:
    histogram = _lazy.get(name)
    if histogram is None:
        with _lazy_lock:  # registering the same name twice raises
            histogram = _lazy.get(name)
            if histogram is None:
                documentation, buckets = _LAZY_HISTOGRAMS[name]
                histogram = _lazy[name] = Histogram(name, documentation, buckets=buckets)
    return histogram


def pubsub_lag() -> Histogram:
    return _lazy_histogram("gateway_pubsub_lag_seconds")


def ws_ping_rtt() -> Histogram:
    return _lazy_histogram("gateway_ws_ping_rtt_seconds")


LISTENERS_ACTIVE = Gauge("gateway_listeners_active", "Attached listeners in this worker", ["kind"],
                         multiprocess_mode="livesum")
LISTENER_RESTARTS = Counter("listener_restarts_total", "Listeners replaced by the watchdog", ["kind", "reason"])


# The envelope's "timestamp" (ISO-8601 UTC, milliseconds): near the start of an event, and inside a fan-out message's
# JSON-escaped "middle" (realtime/envelope.py, realtime/fanout.py), hence the optional backslashes.
_TIMESTAMP = re.compile(rb'"timestamp\\?":\\?"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z')
PUBSUB_LAG_SAMPLE_S = 0.01  # at most one observation per 10 ms per process: a regex and a date parse, off the hot path
_last_lag_sample = 0.0


def observe_pubsub_lag(message: bytes | str) -> None:
    """Sample the Pub/Sub lag of a message the dispatcher received (messages without a timestamp are skipped)."""
    global _last_lag_sample
    now = time.time()
    if now - _last_lag_sample < PUBSUB_LAG_SAMPLE_S:
        return
    data = message.encode() if isinstance(message, str) else message
    found = _TIMESTAMP.search(data, 0, 4096)
    if found is None:
        return
    _last_lag_sample = now
    try:
        published = dt.datetime.fromisoformat(found.group(1).decode()).replace(tzinfo=dt.timezone.utc).timestamp()
    except ValueError:  # a date that is not one (month 13): never let a metric break the dispatcher's reader
        return
    pubsub_lag().observe(max(0.0, now - published))


def exposition() -> bytes:
    """The text a scrape of /metrics gets: this process's registry, or every process's files in multiprocess mode."""
    if not MULTIPROCESS:
        return generate_latest()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


if MULTIPROCESS:
    # A live-mode gauge keeps counting a process until its files are marked dead; a clean exit does it here.
    atexit.register(multiprocess.mark_process_dead, os.getpid())
