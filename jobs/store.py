"""Job state in Redis: one hash per job (its user's ``{u<shard>}`` slot) and the queue in the ``{jobs}`` slot
(core/keys.py). Every state change is one Lua script on one slot, so it works on Redis Cluster too.

* A job hash moves ``queued -> running -> done | error | cancelled``. A run holds a random token; every write of a
  run is refused once the token changed (the job was recovered and handed to another process), so a runner that was
  paused past its lease can never overwrite its successor.
* ``ready`` (FIFO) and ``leases`` (expiry) are sorted sets of job refs (``<job_id>:<uid>``); claiming moves a ref from
  one to the other with the claimant's token in ``owners``. Runners renew their leases; a lease that expires means the
  process died (or hung): any runner recovers the job (README, "Long jobs").
* Between writing the hash and enqueueing it there is no transaction (two slots): a crash in that instant leaves a
  job ``queued`` that nobody runs; ``cancel_job`` clears it.
"""
from __future__ import annotations

import json
import time
from typing import Any

from core.integrations.redis import get_redis
from core.keys import job_key, jobs_queue_key

from .types import QUEUED, Job

FINISHED_TTL_S = 7 * 24 * 3600  # a finished job stays readable (get_job, the admin) for a week
_WAKE_TOKENS = 64  # enough to wake every runner thread; more would only be stale wake-ups

READY, LEASES, OWNERS, WAKE, INDEX = (jobs_queue_key(n) for n in ("ready", "leases", "owners", "wake", "index"))

# KEYS: ready, leases, owners. ARGV: now ms, lease ms, token, [ref to claim].
_CLAIM = """
local ref = ARGV[4]
if ref then
  if redis.call('ZREM', KEYS[1], ref) == 0 then return false end
else
  local first = redis.call('ZRANGE', KEYS[1], 0, 0)
  if #first == 0 then return false end
  ref = first[1]
  redis.call('ZREM', KEYS[1], ref)
end
redis.call('ZADD', KEYS[2], tonumber(ARGV[1]) + tonumber(ARGV[2]), ref)
redis.call('HSET', KEYS[3], ref, ARGV[3])
return ref
"""
# KEYS: leases, owners. ARGV: expiry ms, then ref, token pairs. Returns the refs whose lease another process holds.
_RENEW = """
local lost = {}
for i = 2, #ARGV, 2 do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[i + 1] then
    redis.call('ZADD', KEYS[1], ARGV[1], ARGV[i])
  else
    table.insert(lost, ARGV[i])
  end
end
return lost
"""
# KEYS: leases, owners. ARGV: ref, token.
_RELEASE = """
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
end
return 1
"""
# KEYS: leases, owners. ARGV: now ms, limit. Takes (removes and returns) expired leases: one process recovers each.
_TAKE_EXPIRED = """
local refs = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, ref in ipairs(refs) do
  redis.call('ZREM', KEYS[1], ref)
  redis.call('HDEL', KEYS[2], ref)
end
return refs
"""
# KEYS: job. ARGV: token, runner, now ms.
_START = """
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'running', 'token', ARGV[1], 'runner', ARGV[2], 'started_at', ARGV[3],
  'updated_at', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
return 1
"""
# KEYS: job. ARGV: token, now ms, then field, value pairs. Returns ok, cancel (asked to stop) or lost.
_UPDATE = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' or redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then
  return 'lost'
end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[2], unpack(ARGV, 3))
if redis.call('HGET', KEYS[1], 'cancel') == '1' then return 'cancel' end
return 'ok'
"""
# KEYS: job. ARGV: token, now ms, ttl s, then field, value pairs (status among them).
_FINISH = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' or redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[2], 'finished_at', ARGV[2], unpack(ARGV, 4))
redis.call('HDEL', KEYS[1], 'token')
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""
# KEYS: job. ARGV: now ms, ttl s. Returns missing, cancelled (was queued), requested (running: the run stops at its
# next progress report) or final.
_CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'cancel', '1', 'step', 'cancelled', 'updated_at', ARGV[1],
    'finished_at', ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return 'cancelled'
end
if status == 'running' then
  redis.call('HSET', KEYS[1], 'cancel', '1', 'updated_at', ARGV[1])
  return 'requested'
end
return 'final'
"""
# KEYS: job. ARGV: now ms, ttl s, resumable (1/0), max attempts, step text, error text. For a job whose lease expired
# (or whose runner is stopping): requeue (resumable, attempts left), cancelled (asked to), or error. Returns the outcome.
_RECOVER = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status ~= 'queued' and status ~= 'running' then return 'final' end
local function finish(final, fields)
  redis.call('HSET', KEYS[1], 'status', final, 'updated_at', ARGV[1], 'finished_at', ARGV[1], unpack(fields))
  redis.call('HDEL', KEYS[1], 'token')
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return final
end
if redis.call('HGET', KEYS[1], 'cancel') == '1' then return finish('cancelled', {'step', 'cancelled'}) end
if status == 'queued' then return 'queued' end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if ARGV[3] == '1' and attempts < tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'status', 'queued', 'step', ARGV[5], 'updated_at', ARGV[1])
  redis.call('HDEL', KEYS[1], 'token')
  return 'queued'
end
return finish('error', {'error', ARGV[6]})
"""


def now_ms() -> int:
    return int(time.time() * 1000)


def ref_of(uid: str, job_id: str) -> str:
    return f"{job_id}:{uid}"


def split_ref(ref: str | bytes) -> tuple[str, str]:
    """(uid, job_id) of a ref; job ids are hex, so the first ':' separates them whatever the uid holds."""
    text = ref.decode() if isinstance(ref, bytes) else ref
    job_id, uid = text.split(":", 1)
    return uid, job_id


def _flat(fields: dict[str, Any]) -> list[str]:
    flat: list[str] = []
    for name, value in fields.items():
        flat += [name, value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))]
    return flat


def _script(source: str) -> Any:
    return get_redis().register_script(source)


def create(*, uid: str, job_id: str, name: str, params: dict[str, Any]) -> None:
    """Write a new ``queued`` job and list it in the admin's index; :func:`enqueue` then hands it to the runners."""
    created = now_ms()
    get_redis().hset(job_key(uid, job_id), mapping={
        "job_id": job_id, "uid": uid, "name": name, "status": QUEUED, "progress": 0, "step": "queued",
        "params": json.dumps(params, separators=(",", ":")), "attempts": 0, "created_at": created,
        "updated_at": created,
    })
    get_redis().zadd(INDEX, {ref_of(uid, job_id): created})


def enqueue(ref: str) -> None:
    """Put a ref on the ready queue and wake one runner."""
    pipe = get_redis().pipeline(transaction=True)
    pipe.zadd(READY, {ref: now_ms()})
    pipe.rpush(WAKE, 1)
    pipe.ltrim(WAKE, -_WAKE_TOKENS, -1)
    pipe.execute()


def wait_for_work(timeout_s: float) -> None:
    """Block until a job is enqueued or ``timeout_s`` passes (runners also poll, so a lost wake-up only delays)."""
    get_redis().blpop([WAKE], timeout=timeout_s)


def claim(*, token: str, lease_ms: int, ref: str | None = None) -> str | None:
    args = [now_ms(), lease_ms, token, *([ref] if ref else [])]
    claimed = _script(_CLAIM)(keys=[READY, LEASES, OWNERS], args=args)
    return claimed.decode() if claimed else None


def renew(leases: dict[str, str], *, lease_ms: int) -> list[str]:
    if not leases:
        return []
    args: list[Any] = [now_ms() + lease_ms]
    for ref, token in leases.items():
        args += [ref, token]
    return [ref.decode() for ref in _script(_RENEW)(keys=[LEASES, OWNERS], args=args)]


def release(ref: str, token: str) -> None:
    _script(_RELEASE)(keys=[LEASES, OWNERS], args=[ref, token])


def take_expired(*, limit: int = 100) -> list[str]:
    return [ref.decode() for ref in _script(_TAKE_EXPIRED)(keys=[LEASES, OWNERS], args=[now_ms(), limit])]


def start(*, uid: str, job_id: str, token: str, runner: str) -> bool:
    return bool(_script(_START)(keys=[job_key(uid, job_id)], args=[token, runner, now_ms()]))


def update(*, uid: str, job_id: str, token: str, fields: dict[str, Any]) -> str:
    return _script(_UPDATE)(keys=[job_key(uid, job_id)], args=[token, now_ms(), *_flat(fields)]).decode()


def finish(*, uid: str, job_id: str, token: str, fields: dict[str, Any]) -> bool:
    args = [token, now_ms(), FINISHED_TTL_S, *_flat(fields)]
    return bool(_script(_FINISH)(keys=[job_key(uid, job_id)], args=args))


def cancel(*, uid: str, job_id: str) -> str:
    outcome = _script(_CANCEL)(keys=[job_key(uid, job_id)], args=[now_ms(), FINISHED_TTL_S]).decode()
    if outcome == "cancelled":
        get_redis().zrem(READY, ref_of(uid, job_id))
    return outcome


def recover(*, uid: str, job_id: str, resumable: bool, max_attempts: int, step: str, error: str) -> str:
    """Requeue, cancel or fail a job nobody holds a lease on; returns queued, cancelled, error, final or missing."""
    args = [now_ms(), FINISHED_TTL_S, int(resumable), max_attempts, step, error]
    outcome = _script(_RECOVER)(keys=[job_key(uid, job_id)], args=args).decode()
    if outcome == "queued":
        enqueue(ref_of(uid, job_id))
    return outcome


def read(uid: str, job_id: str) -> Job | None:
    fields = get_redis().hgetall(job_key(uid, job_id))
    return Job.from_hash(fields) if fields else None


def read_index(*, limit: int) -> list[Job]:
    """The newest ``limit`` jobs of every user (one pipeline); refs of expired jobs are pruned on the way."""
    client = get_redis()
    refs = client.zrevrange(INDEX, 0, limit - 1)
    if not refs:
        return []
    pipe = client.pipeline(transaction=False)
    for ref in refs:
        pipe.hgetall(job_key(*split_ref(ref)))
    jobs, gone = [], []
    for ref, fields in zip(refs, pipe.execute(), strict=True):
        if fields:
            jobs.append(Job.from_hash(fields))
        else:
            gone.append(ref)
    if gone:
        client.zrem(INDEX, *gone)
    return jobs
