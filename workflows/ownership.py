"""Which worker holds which user's listeners: Redis leases, the live-worker registry and the control channel.

* ``listeners:lease:{u<shard>}:<uid>`` holds the owning worker id with a TTL; the owner renews all its leases in one Lua call,
  and a lease that expired (its worker died or stalled) is free for another worker to claim. A worker that finds
  a lease renewed by someone else has lost the user and detaches.
* ``listeners:{workers}`` (set) + ``listeners:{workers}:worker:<id>`` (hash, expires with the worker's heartbeat): who
  is alive, and the counts /healthz reports. ``listeners:{workers}:changes`` carries the id of a worker that registered,
  left or was declared dead, so that peers update their view at once: a user who comes online after a worker's
  registration is seen by every peer after that change (same subscriber connection, server order), and goes to
  its preferred worker.
* Users are spread by rendezvous hashing over the live workers: the preferred worker claims at once, the others
  only when a user stayed unowned (preferred worker dead or not started yet).
* ``listeners:{workers}:control:<id>``: staff commands (restart, detach, resync) for the users a worker owns. Its
  subscriber count is also the worker's liveness: a worker subscribes before it registers, and when its process
  dies the kernel closes its sockets, so the server drops the subscription at once. A registered worker with no
  subscriber (for longer than a short grace: a subscriber reconnecting) is dead now; its peers delete its heartbeat
  and its leases (compare-and-delete) and claim its users, instead of waiting for the leases to expire. The TTL
  stays the fallback for what keeps a socket open without a live worker behind it (a paused process, a partition).

Redis Cluster (core/keys.py): the registry, stats and control channels share the ``{workers}`` tag, so the scripts
that read ``PUBSUB NUMSUB`` (which counts only the node's own subscribers) run on the node that holds the worker's
control subscription: the worker subscribes that channel first, and redis-py's cluster pub/sub connects to the node
of the first channel's slot. Leases carry their user's shard tag; a script over many leases runs once per slot
(pipelined, one round trip per node); on a single Redis it stays one call per 1,000 leases. Releasing a gone worker's
leases re-checks its subscription in the same script on a single Redis; on a cluster the leases live on other nodes,
so the check runs first on the ``{workers}`` node and the compare-and-delete follows (a worker that resubscribed in
between loses those users at its next renewal and they move by rendezvous hashing, as after any lost lease).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from core.integrations.redis import get_redis, is_cluster
from core.integrations.redis_scripts import LuaScript, group_by_slot
from core.keys import WORKERS_TAG, user_tag

LEASE_PREFIX = "listeners:lease:"
WORKERS_KEY = f"listeners:{WORKERS_TAG}"  # set of worker ids
STATS_PREFIX = f"listeners:{WORKERS_TAG}:worker:"  # + id: hash of users, workflow_users, workflow_cache_entries, ready_users, heartbeat_at
CONTROL_PREFIX = f"listeners:{WORKERS_TAG}:control:"  # + id
WORKERS_CHANNEL = f"listeners:{WORKERS_TAG}:changes"  # data: the id of a worker that registered, left or died
CONTROL_ACTIONS = frozenset({"restart", "detach", "resync"})

# KEYS: leases (one slot on a cluster). ARGV: worker id, ttl ms. Returns the indexes (1-based) of the leases that are
# (now) ours.
_CLAIM_MANY = LuaScript("""
local claimed = {}
for i, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if owner == false then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    table.insert(claimed, i)
  elseif owner == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    table.insert(claimed, i)
  end
end
return claimed
""")

# KEYS: leases. ARGV: worker id, ttl ms. Returns the indexes (1-based) of the leases that are no longer ours.
_RENEW = LuaScript("""
local lost = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
  else
    table.insert(lost, i)
  end
end
return lost
""")

# KEYS: leases. ARGV: worker id. Deletes only our own leases.
_RELEASE_BODY = """
local n = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    n = n + 1
  end
end
return n
"""
_RELEASE = LuaScript(_RELEASE_BODY)

# KEYS: workers set, the worker's heartbeat hash. ARGV: worker id, ttl ms, changes channel, field, value, ...
# 1 when the worker was not registered: that is announced in the same atomic step.
_HEARTBEAT = """
local added = redis.call('SADD', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[2], ARGV[2])
if added == 1 then
  redis.call('PUBLISH', ARGV[3], ARGV[1])
end
return added
"""

# KEYS: workers set. ARGV: stats prefix, control prefix. Every registered worker: {id, heartbeat alive, subscribers}.
_LIVENESS = """
local rows = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local subscribers = redis.call('PUBSUB', 'NUMSUB', ARGV[2] .. id)[2]
  table.insert(rows, {id, redis.call('EXISTS', ARGV[1] .. id), subscribers})
end
return rows
"""

# KEYS: workers set, the worker's stats hash. ARGV: worker id, changes channel. (A cluster refuses PUBLISH in a
# pipeline, hence a script.)
_FORGET = """
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[2], ARGV[1])
"""

# KEYS: workers set (only to run on the {workers} node). ARGV: control channel. Its subscribers there.
_SUBSCRIBERS = "return redis.call('PUBSUB', 'NUMSUB', ARGV[1])[2]"

# KEYS: the worker's heartbeat hash. ARGV: its control channel, worker id, changes channel. Re-checks the
# subscription inside the script so that a worker which has just (re)subscribed is never declared dead.
# 1 when it was declared dead.
_DECLARE_DEAD = """
if redis.call('PUBSUB', 'NUMSUB', ARGV[1])[2] > 0 then
  return 0
end
local deleted = redis.call('DEL', KEYS[1])
if deleted == 1 then
  redis.call('PUBLISH', ARGV[3], ARGV[2])
end
return deleted
"""

# KEYS: leases. ARGV: worker id, its control channel. Deletes the worker's leases, unless it is subscribed (alive):
# -1 then. The check and the deletes are one atomic step.
_RELEASE_IF_GONE = LuaScript("""
if redis.call('PUBSUB', 'NUMSUB', ARGV[2])[2] > 0 then
  return -1
end
""" + _RELEASE_BODY)

_LEASE_BATCH = 1000  # keys per Lua call


def lease_key(uid: str) -> str:
    return f"{LEASE_PREFIX}{user_tag(uid)}:{uid}"


def claim(uid: str, worker_id: str, ttl_ms: int) -> bool:
    """Take ``uid``'s lease if nobody holds it (or extend it if we do); True when it is ours."""
    return bool(claim_many([uid], worker_id, ttl_ms))


def _batches(uids: list[str]) -> list[list[str]]:
    """Leases one script may take: per slot on a cluster, then at most 1,000 (bounds how long one script holds Redis)."""
    return [group[start:start + _LEASE_BATCH] for group in group_by_slot(uids, lease_key)
            for start in range(0, len(group), _LEASE_BATCH)]


def _eval_in_batches(script: LuaScript, uids: list[str], *args: object) -> list[tuple[list[str], object]]:
    """Run a lease script over ``uids``' lease keys: every batch in one pipelined round trip (per node)."""
    batches = _batches(uids)
    replies = script.run_many([([lease_key(uid) for uid in batch], args) for batch in batches])
    return list(zip(batches, replies))


def claim_many(uids: list[str], worker_id: str, ttl_ms: int) -> list[str]:
    """``claim`` for many users in one round trip per 1,000: a dead peer's users are taken over at once."""
    return [batch[i - 1] for batch, indexes in _eval_in_batches(_CLAIM_MANY, uids, worker_id, ttl_ms) for i in indexes]


def renew(uids: list[str], worker_id: str, ttl_ms: int) -> list[str]:
    """Extend our leases; returns the uids whose lease we lost."""
    return [batch[i - 1] for batch, indexes in _eval_in_batches(_RENEW, uids, worker_id, ttl_ms) for i in indexes]


def release(uids: list[str], worker_id: str) -> None:
    _eval_in_batches(_RELEASE, uids, worker_id)


def release_if_gone(uids: list[str], worker_id: str) -> int:
    """Delete ``worker_id``'s leases among ``uids`` if it has no subscriber (it is gone); the count deleted, or -1
    when it turned out to be alive."""
    if is_cluster():  # the subscription is on the {workers} node, the leases elsewhere (module docstring)
        if get_redis().eval(_SUBSCRIBERS, 1, WORKERS_KEY, control_channel(worker_id)) > 0:
            return -1
        return sum(int(count) for _, count in _eval_in_batches(_RELEASE, uids, worker_id))
    released = 0
    for _, count in _eval_in_batches(_RELEASE_IF_GONE, uids, worker_id, control_channel(worker_id)):
        if count < 0:
            return -1
        released += count
    return released


def owner(uid: str) -> str | None:
    value = get_redis().get(lease_key(uid))
    return value.decode() if value is not None else None


def owners(uids: list[str]) -> dict[str, str | None]:
    """One MGET per slot (all of them on a single Redis), in one pipelined round trip."""
    groups = group_by_slot(uids, lease_key)
    if not groups:
        return {}
    pipe = get_redis().pipeline(transaction=False)
    for group in groups:
        pipe.execute_command("MGET", *map(lease_key, group))  # cluster pipelines block mget(); one slot per group
    found: dict[str, str | None] = {}
    for group, values in zip(groups, pipe.execute()):
        found.update({uid: (value.decode() if value is not None else None) for uid, value in zip(group, values)})
    return {uid: found[uid] for uid in uids}


def preferred_worker(uid: str, workers: Iterable[str]) -> str | None:
    """Rendezvous hashing: each user's highest-scoring live worker; adding or losing a worker moves few users."""
    def score(worker_id: str) -> bytes:
        return hashlib.blake2b(f"{worker_id}|{uid}".encode(), digest_size=8).digest()

    return max(workers, key=score, default=None)


# --- worker registry -----------------------------------------------------------------------------------------------
def stats_key(worker_id: str) -> str:
    return STATS_PREFIX + worker_id


def heartbeat(worker_id: str, stats: dict[str, int | float | str], ttl_ms: int) -> bool:
    """Publish the worker's counts and keep it registered; True when it was not registered (first beat, or another
    worker had already taken it for dead), which peers are told on ``WORKERS_CHANNEL``."""
    fields = [item for pair in stats.items() for item in pair]
    return bool(get_redis().eval(_HEARTBEAT, 2, WORKERS_KEY, stats_key(worker_id), worker_id, ttl_ms,
                                 WORKERS_CHANNEL, *fields))


def registered_workers() -> dict[str, bool]:
    """Every registered worker id and whether it is alive (its heartbeat hash has not expired)."""
    return {worker_id: alive for worker_id, (alive, _) in worker_liveness().items()}


def worker_liveness() -> dict[str, tuple[bool, int]]:
    """Every registered worker id -> (heartbeat alive, subscribers of its control channel), in one script on the
    ``{workers}`` node. No subscriber: that worker's process is gone (or its subscriber is reconnecting)."""
    rows = get_redis().eval(_LIVENESS, 1, WORKERS_KEY, STATS_PREFIX, CONTROL_PREFIX)
    return {worker_id.decode(): (bool(alive), int(subscribers)) for worker_id, alive, subscribers in sorted(rows)}


def declare_dead(worker_id: str) -> bool:
    """Take a worker that holds no subscription for dead now: its heartbeat goes, so every worker stops counting
    it at once (it stays in the set until its ListenerState rows are gone). False when it is subscribed again."""
    return bool(get_redis().eval(_DECLARE_DEAD, 1, stats_key(worker_id), control_channel(worker_id), worker_id,
                                 WORKERS_CHANNEL))


def forget_worker(worker_id: str) -> None:
    # A stopping worker has released its leases: the announcement makes peers claim them now.
    get_redis().eval(_FORGET, 2, WORKERS_KEY, stats_key(worker_id), worker_id, WORKERS_CHANNEL)


# --- control channel ------------------------------------------------------------------------------------------------
def control_channel(worker_id: str) -> str:
    return CONTROL_PREFIX + worker_id


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
