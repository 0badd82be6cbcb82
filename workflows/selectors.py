"""Reads of the listeners workers' state: counts for /healthz (Redis, per live worker) and rows for the admin (SQL)."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from core.integrations.redis import get_redis

from .listeners.jobs import WORKFLOW as WORKFLOW_KIND
from .models import ListenerState
from .ownership import WORKERS_KEY, stats_key

_MAX_USERS_LISTED = 1000


def listener_counts() -> dict[str, int]:
    """Users with listeners, summed over the live workers (a dead worker's hash has expired)."""
    client = get_redis()
    worker_ids = sorted(client.smembers(WORKERS_KEY))
    users = workflow_users = 0
    if worker_ids:
        pipe = client.pipeline(transaction=False)
        for worker_id in worker_ids:
            pipe.hmget(stats_key(worker_id.decode()), "users", "workflow_users")
        for user_count, workflow_count in pipe.execute():
            users += int(user_count or 0)
            workflow_users += int(workflow_count or 0)
    return {"listeners_count": users, "workflow_listeners_count": workflow_users}


def workflow_listener_status(*, with_users: bool) -> dict[str, Any]:
    """The original service's ``/debug`` block: ``{status, enabled, active_count, cache_entries}`` over the live
    workers, plus the users with a jobs listener when ``with_users`` (LOCAL only: user ids stay out of production)."""
    client = get_redis()
    worker_ids = sorted(client.smembers(WORKERS_KEY))
    active = cached = 0
    if worker_ids:
        pipe = client.pipeline(transaction=False)
        for worker_id in worker_ids:
            pipe.hmget(stats_key(worker_id.decode()), "workflow_users", "workflow_cache_entries")
        for users, entries in pipe.execute():
            active += int(users or 0)
            cached += int(entries or 0)
    enabled = settings.WORKFLOW_LISTENER_ENABLED
    status = "disabled" if not enabled else "ok" if worker_ids else "no_worker"
    block: dict[str, Any] = {"status": status, "enabled": enabled, "active_count": active, "cache_entries": cached}
    if with_users:
        rows = ListenerState.objects.values_list("uid", "kinds").order_by("uid")[:_MAX_USERS_LISTED]
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
