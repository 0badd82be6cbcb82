"""Every Prometheus series the gateway exports, declared in one place (served at GET /metrics)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
RPC_IN_FLIGHT = Gauge("gateway_rpc_in_flight", "RPC method bodies currently executing (including after a TIMEOUT)")

EVENTS_PUBLISHED = Counter("gateway_events_published_total", "Events published by type", ["type"])
EVENT_PUBLISH_FAILURES = Counter("gateway_event_publish_failures_total", "Publish attempts that failed", ["stage"])
EVENTS_QUEUED = Gauge("gateway_events_queued", "Events waiting in the publisher's retry queue")
WS_CONNECTIONS = Gauge("gateway_ws_connections", "Open WebSocket connections in this process")
WS_REJECTED = Counter("gateway_ws_rejected_total", "WebSocket connections refused", ["reason"])
WS_SLOW_CLOSES = Counter("gateway_ws_slow_consumer_closes_total", "Sockets closed with 4008 for not keeping up")
WS_DELIVERY_FAILURES = Counter("gateway_ws_delivery_failures_total", "Frames that could not be sent to a socket")
RECOVERIES = Counter("gateway_recover_total", "Reconnect recoveries", ["recovered"])
USERS_ONLINE = Gauge("gateway_users_online", "Users with at least one live socket or session (last sweep)")

LISTENERS_ACTIVE = Gauge("gateway_listeners_active", "Attached listeners in this worker", ["kind"])
LISTENER_RESTARTS = Counter("listener_restarts_total", "Listeners replaced by the watchdog", ["kind", "reason"])
