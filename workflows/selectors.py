"""Reads of the listeners workers' published state (kept in Redis by each worker, read by health and the admin)."""
from __future__ import annotations

from listeners_project.adapters.redis import get_redis

WORKERS_KEY = "listeners:workers"  # set of worker ids
WORKER_STATS_KEY = "listeners:worker:{worker_id}"  # hash: users, workflow_users, heartbeat_at (expires with the worker)


def listener_counts() -> dict[str, int]:
    """Users with listeners, summed over the live workers (a dead worker's hash has expired)."""
    client = get_redis()
    worker_ids = sorted(client.smembers(WORKERS_KEY))
    users = workflow_users = 0
    if worker_ids:
        pipe = client.pipeline(transaction=False)
        for worker_id in worker_ids:
            pipe.hmget(WORKER_STATS_KEY.format(worker_id=worker_id.decode()), "users", "workflow_users")
        for user_count, workflow_count in pipe.execute():
            users += int(user_count or 0)
            workflow_users += int(workflow_count or 0)
    return {"listeners_count": users, "workflow_listeners_count": workflow_users}
