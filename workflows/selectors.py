"""Reads of the listeners workers' state: counts for /healthz (Redis, per live worker) and rows for the admin (SQL)."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.db.models import QuerySet

from core.integrations.redis import get_redis

from .listeners.jobs import WORKFLOW as WORKFLOW_KIND
from .models import ListenerState
from .ownership import WORKERS_KEY, stats_key

_MAX_USERS_LISTED = 1000


def _worker_totals(*fields: str) -> tuple[int, dict[str, int]]:
    """How many workers are registered, and these stats fields summed over them (a dead worker's hash has expired,
    so it adds nothing): two round trips whatever the number of workers."""
    client = get_redis()
    worker_ids = sorted(client.smembers(WORKERS_KEY))
    totals = dict.fromkeys(fields, 0)
    if worker_ids:
        pipe = client.pipeline(transaction=False)
        for worker_id in worker_ids:
            pipe.hmget(stats_key(worker_id.decode()), *fields)
        for values in pipe.execute():
            for field, value in zip(fields, values):
                totals[field] += int(value or 0)
    return len(worker_ids), totals


def listener_counts() -> dict[str, int]:
    """Users with listeners, summed over the live workers."""
    _, totals = _worker_totals("users", "workflow_users")
    return {"listeners_count": totals["users"], "workflow_listeners_count": totals["workflow_users"]}


def workflow_listener_status(*, with_users: bool) -> dict[str, Any]:
    """The original service's ``/debug`` block: ``{status, enabled, active_count, cache_entries}`` over the live
    workers, plus the users with a jobs listener when ``with_users`` (LOCAL only: user ids stay out of production)."""
    workers, totals = _worker_totals("workflow_users", "workflow_cache_entries")
    enabled = settings.WORKFLOW_LISTENER_ENABLED
    status = "disabled" if not enabled else "ok" if workers else "no_worker"
    block: dict[str, Any] = {"status": status, "enabled": enabled, "active_count": totals["workflow_users"],
                             "cache_entries": totals["workflow_cache_entries"]}
    if with_users:
        try:
            rows = list(ListenerState.objects.values_list("uid", "kinds").order_by("uid")[:_MAX_USERS_LISTED])
        except DatabaseError:  # a diagnostic page: the block stays useful without the list (e.g. SQLite locked)
            return block
        block["users"] = [uid for uid, kinds in rows if WORKFLOW_KIND in (kinds or [])]
    return block


def list_listener_states(*, worker_id: str | None = None, uid: str | None = None) -> QuerySet[ListenerState]:
    """Current listener rows (worker, user, kinds, since, last event, restarts), ordered by worker then user."""
    states = ListenerState.objects.all()
    if worker_id is not None:
        states = states.filter(worker_id=worker_id)
    if uid is not None:
        states = states.filter(uid=uid)
    return states.order_by("worker_id", "uid")
