"""Which worker holds which user's listeners: Redis leases, the live-worker registry and the control channel.

* ``listeners:lease:{uid}`` holds the owning worker id with a TTL; the owner renews all its leases in one Lua call,
  and a lease that expired (its worker died or stalled) is free for another worker to claim. A worker that finds
  a lease renewed by someone else has lost the user and detaches.
* ``listeners:workers`` (set) + ``listeners:worker:{id}`` (hash, expires with the worker's heartbeat): who is
  alive, and the counts /healthz reports.
* Users are spread by rendezvous hashing over the live workers: the preferred worker claims at once, the others
  only when a user stayed unowned (preferred worker dead or not started yet).
* ``listeners:control:{id}``: staff commands (restart, detach, resync) for the users a worker owns.

The Lua scripts touch keys they are given; on Redis Cluster the lease keys would need a hash tag (not needed on a
single Redis/Valkey).
"""
from __future__ import annotations

import hashlib
import json
from typing import Iterable

from listeners_project.adapters.redis import get_redis

LEASE_PREFIX = "listeners:lease:"
WORKERS_KEY = "listeners:workers"  # set of worker ids
WORKER_STATS_KEY = "listeners:worker:{worker_id}"  # hash: users, workflow_users, ready_users, heartbeat_at
CONTROL_CHANNEL = "listeners:control:{worker_id}"
CONTROL_ACTIONS = frozenset({"restart", "detach", "resync"})

# KEYS: lease. ARGV: worker id, ttl ms. 1 when the lease is (now) ours.
_CLAIM = """
local owner = redis.call('GET', KEYS[1])
if owner == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
elseif owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: leases. ARGV: worker id, ttl ms. Returns the indexes (1-based) of the leases that are no longer ours.
_RENEW = """
local lost = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
  else
    table.insert(lost, i)
  end
end
return lost
"""

# KEYS: leases. ARGV: worker id. Deletes only our own leases.
_RELEASE = """
local n = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    n = n + 1
  end
end
return n
"""

_LEASE_BATCH = 1000  # keys per Lua call


def lease_key(uid: str) -> str:
    return LEASE_PREFIX + uid


def claim(uid: str, worker_id: str, ttl_ms: int) -> bool:
    return bool(get_redis().eval(_CLAIM, 1, lease_key(uid), worker_id, ttl_ms))


def renew(uids: list[str], worker_id: str, ttl_ms: int) -> list[str]:
    """Extend our leases; returns the uids whose lease we lost."""
    lost: list[str] = []
    client = get_redis()
    for start in range(0, len(uids), _LEASE_BATCH):
        batch = uids[start:start + _LEASE_BATCH]
        indexes = client.eval(_RENEW, len(batch), *map(lease_key, batch), worker_id, ttl_ms)
        lost.extend(batch[i - 1] for i in indexes)
    return lost


def release(uids: list[str], worker_id: str) -> None:
    client = get_redis()
    for start in range(0, len(uids), _LEASE_BATCH):
        batch = uids[start:start + _LEASE_BATCH]
        client.eval(_RELEASE, len(batch), *map(lease_key, batch), worker_id)


def owner(uid: str) -> str | None:
    value = get_redis().get(lease_key(uid))
    return value.decode() if value is not None else None


def owners(uids: list[str]) -> dict[str, str | None]:
    if not uids:
        return {}
    values = get_redis().mget([lease_key(uid) for uid in uids])
    return {uid: (value.decode() if value is not None else None) for uid, value in zip(uids, values)}


def preferred_worker(uid: str, workers: Iterable[str]) -> str | None:
    """Rendezvous hashing: each user's highest-scoring live worker; adding or losing a worker moves few users."""
    def score(worker_id: str) -> bytes:
        return hashlib.blake2b(f"{worker_id}|{uid}".encode(), digest_size=8).digest()

    return max(workers, key=score, default=None)


# --- worker registry -----------------------------------------------------------------------------------------------
def stats_key(worker_id: str) -> str:
    return WORKER_STATS_KEY.format(worker_id=worker_id)


def heartbeat(worker_id: str, stats: dict[str, int | float | str], ttl_ms: int) -> bool:
    """Publish the worker's counts and keep it registered; True when it was not registered (first beat, or another
    worker had already taken it for dead)."""
    pipe = get_redis().pipeline(transaction=True)
    pipe.sadd(WORKERS_KEY, worker_id)
    pipe.hset(stats_key(worker_id), mapping=stats)
    pipe.pexpire(stats_key(worker_id), ttl_ms)
    return bool(pipe.execute()[0])


def registered_workers() -> dict[str, bool]:
    """Every registered worker id and whether it is alive (its heartbeat hash has not expired)."""
    client = get_redis()
    worker_ids = sorted(member.decode() for member in client.smembers(WORKERS_KEY))
    if not worker_ids:
        return {}
    pipe = client.pipeline(transaction=False)
    for worker_id in worker_ids:
        pipe.exists(stats_key(worker_id))
    return {worker_id: bool(alive) for worker_id, alive in zip(worker_ids, pipe.execute())}


def forget_worker(worker_id: str) -> None:
    pipe = get_redis().pipeline(transaction=True)
    pipe.srem(WORKERS_KEY, worker_id)
    pipe.delete(stats_key(worker_id))
    pipe.execute()


# --- control channel ------------------------------------------------------------------------------------------------
def control_channel(worker_id: str) -> str:
    return CONTROL_CHANNEL.format(worker_id=worker_id)


def send_control(uid: str, action: str) -> bool:
    """Send a staff command to the worker that owns ``uid``; False when no live worker owns it."""
    if action not in CONTROL_ACTIONS:
        raise ValueError(f"unknown listener action {action!r}")
    worker_id = owner(uid)
    if worker_id is None:
        return False
    receivers = get_redis().publish(control_channel(worker_id), json.dumps({"action": action, "uid": uid}))
    return receivers > 0


def parse_control(data: bytes | str) -> tuple[str, str] | None:
    try:
        message = json.loads(data)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("action") not in CONTROL_ACTIONS:
        return None
    uid = message.get("uid")
    return (message["action"], uid) if isinstance(uid, str) and uid else None
