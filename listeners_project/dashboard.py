"""One snapshot of the whole gateway, for the admin dashboard and ``manage.py gateway_status``.

Every number is read live: presence and activity from Redis, sessions and listeners from SQL (constant number of
queries), backend health from the integrations' pings, run concurrently so one slow backend does not add up.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
from django.utils import timezone

from chroma.selectors import list_collection_registrations
from core import activity
from core.integrations import chroma as chroma_adapter
from core.integrations import firebase as firebase_adapter
from core.integrations import redis as redis_adapter
from core.integrations import rtdb as rtdb_adapter
from registry import selectors
from workflows.listeners import metric_kind
from workflows.selectors import list_listener_states

from .console.selectors import charts

_PROBES: dict[str, Callable[[], bool]] = {
    "redis": redis_adapter.ping,
    "firestore": firebase_adapter.ping,
    "rtdb": rtdb_adapter.ping,
    "chroma": chroma_adapter.ping,
}
_MAX_REGISTRATIONS_COUNTED = 100_000


def backend_health() -> dict[str, str]:
    with ThreadPoolExecutor(max_workers=len(_PROBES), thread_name_prefix="health") as pool:
        futures = {name: pool.submit(probe) for name, probe in _PROBES.items()}
        return {name: "ok" if future.result() else "error" for name, future in futures.items()}


def listener_summary() -> dict[str, Any]:
    """Listeners as the workers report them: users with listeners, listeners per kind (every chat thread counts
    as ``chat``), users per worker. One query."""
    by_kind: Counter[str] = Counter()
    per_worker: Counter[str] = Counter()
    for worker_id, kinds in list_listener_states().values_list("worker_id", "kinds"):
        per_worker[worker_id] += 1
        by_kind.update(metric_kind(kind) for kind in kinds or [])
    return {
        "users": sum(per_worker.values()),
        "workers": len(per_worker),
        "by_kind": dict(sorted(by_kind.items())),
        "by_worker": dict(sorted(per_worker.items())),
    }


def _from_redis(read: Callable[[], Any]) -> Any:
    """A Redis-backed number, or None when Redis can't be reached (the health section says why)."""
    try:
        return read()
    except (redis.RedisError, OSError):
        return None


def _charts() -> list[dict[str, Any]]:
    """The last 15 and 60 minutes of each series, as SVG sparklines (listeners_project/console/sparkline.py)."""
    return [
        {"name": chart.name, "label": chart.label, "gauge": chart.gauge, "href": chart.href, "last15": chart.last15,
         "last60": chart.last60, "svg15": chart.svg15, "svg60": chart.svg60}
        for chart in charts(activity.minutes())
    ]


def gateway_snapshot() -> dict[str, Any]:
    activity_counts = _from_redis(activity.last_minute)
    return {
        "generated_at": timezone.now(),
        "users_online": _from_redis(selectors.users_online_count),
        "sockets": _from_redis(selectors.total_socket_count),
        "sessions": selectors.session_counts(),
        "listeners": listener_summary(),
        "chroma_registrations": _from_redis(
            lambda: len(list_collection_registrations(limit=_MAX_REGISTRATIONS_COUNTED))
        ),
        "per_minute": {
            "events": activity_counts[activity.EVENTS] if activity_counts else None,
            "rpc_calls": activity_counts[activity.RPC_CALLS] if activity_counts else None,
            "rpc_errors": activity_counts[activity.RPC_ERRORS] if activity_counts else None,
        },
        "charts": _from_redis(_charts) or [],
        "health": backend_health(),
    }
