"""Reads of the listeners workers' state: counts for /healthz (Redis, per live worker) and rows for the admin (SQL)."""
from __future__ import annotations

from django.db.models import QuerySet

from core.integrations.redis import get_redis

from .models import ListenerState
from .ownership import WORKERS_KEY, stats_key


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


def list_listener_states(*, worker_id: str | None = None, uid: str | None = None) -> QuerySet[ListenerState]:
    """Current listener rows (worker, user, kinds, since, last event, restarts), ordered by worker then user."""
    states = ListenerState.objects.all()
    if worker_id is not None:
        states = states.filter(worker_id=worker_id)
    if uid is not None:
        states = states.filter(uid=uid)
    return states.order_by("worker_id", "uid")
