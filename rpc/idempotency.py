"""Idempotency keys in Redis, with Stripe / IETF-draft semantics.

One hash per (API client, acting user, key): ``state`` (running|done), ``fp`` (fingerprint of method + canonical args/kwargs),
``owner`` (the run that holds it), and once done the exact ``status`` and ``body`` bytes of the first completed
response, replayed byte-identical. Claiming and settling are single Lua calls, so concurrent duplicates can never
both run. Retryable failures release the key; a run that outlives its caller's deadline still records its result,
so the retry gets it instead of running the work again.

Expiry policy (the IETF draft asks us to publish it): a completed response is kept ``RPC_IDEMP_TTL`` seconds
(default 900, the original service's); a claim whose process died mid-run expires after the call's deadline plus one
minute.

Only writes use keys. The Reflex app derives a key for every call (SHA-256 of method and arguments), reads included;
replaying a read would hand it stale data, so reads ignore the key, as Stripe does. ``RPC_IDEMP_DISABLE`` and
``RPC_IDEMP_DISABLE_METHODS`` (the original's opt-outs) turn keys off everywhere or for named methods.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis
from django.conf import settings
from redis.exceptions import NoScriptError

from core.integrations.redis import get_async_redis

from core.errors import IdempotencyConflict, IdempotencyMismatch, InvalidArgs, Unavailable
from core.serialization import canonical

if TYPE_CHECKING:
    from .registry import MethodSpec

# Returns {"new"} | {"mismatch"} | {"running", pttl} | {"done", status, body}
_CLAIM = """
local cur = redis.call('HMGET', KEYS[1], 'state', 'fp', 'status', 'body')
if not cur[1] then
  redis.call('HSET', KEYS[1], 'state', 'running', 'fp', ARGV[1], 'owner', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'new'}
end
if cur[2] ~= ARGV[1] then return {'mismatch'} end
if cur[1] == 'running' then return {'running', redis.call('PTTL', KEYS[1])} end
return {'done', cur[3], cur[4]}
"""

# ARGV: owner, action ('store'|'release'), status, body, ttl_ms. Only the run that claimed the key may settle it.
_SETTLE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
if ARGV[2] == 'release' then redis.call('DEL', KEYS[1]) return 1 end
redis.call('HSET', KEYS[1], 'state', 'done', 'status', ARGV[3], 'body', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""

_SHA = {script: hashlib.sha1(script.encode()).hexdigest() for script in (_CLAIM, _SETTLE)}  # noqa: S324 - Redis' id

# How long a claim survives a process that died mid-run: the caller's deadline plus a margin for the work to finish.
LEASE_MARGIN_MS = 60_000
# A duplicate that arrives while the first run is in flight polls back this soon.
CONFLICT_RETRY_MS = 100


def fingerprint(method: str, args: list, kwargs: dict) -> str:
    """sha256 of the method and its canonical arguments: the same call, whatever the key order."""
    digest = hashlib.sha256()
    digest.update(method.encode())
    try:
        for part in (args, kwargs):
            digest.update(b"\0")
            digest.update(canonical(part))
    except TypeError:  # parsed JSON always serialises, except past orjson's nesting limit (254 levels)
        raise InvalidArgs("arguments are nested too deeply to be used with an idempotency_key") from None
    return digest.hexdigest()


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: bytes


@dataclass(frozen=True)
class Claim:
    redis_key: str
    owner: str

    async def store(self, status: int, body: bytes) -> None:
        await _run(_SETTLE, self.redis_key, self.owner, "store", str(status), body, str(settings.RPC_IDEMP_TTL * 1000))

    async def release(self) -> None:
        await _run(_SETTLE, self.redis_key, self.owner, "release", "", b"", "0")


async def _run(script: str, key: str, *argv: str | bytes) -> list:
    client = get_async_redis()
    try:
        try:
            return await client.evalsha(_SHA[script], 1, key, *argv)
        except NoScriptError:  # first use on this server, or after SCRIPT FLUSH / a restart
            return await client.eval(script, 1, key, *argv)
    except (redis.RedisError, OSError) as exc:
        raise Unavailable("idempotency store unavailable") from exc


def redis_key(scope: str, key: str, user_id: str | None = None) -> str:
    """``idemp:{<client>:<user>}:<sha256 of the key>``: hashed because keys are caller-chosen text up to 255
    characters (the Redis key stays short and printable). The hash tag (core/keys.py) keeps one client's records for
    one user in one slot; calls that act for no user are spread by the key itself."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"idemp:{{{scope}:{user_id if user_id else digest}}}:{digest}"


async def claim(*, scope: str, key: str, fp: str, deadline_ms: int, user_id: str | None = None) -> Claim | StoredResponse:
    """Claim ``key`` for a new run, or return the stored response; raise 409/422 per the contract."""
    owner = secrets.token_hex(16)
    target = redis_key(scope, key, user_id)
    reply = await _run(_CLAIM, target, fp, owner, str(deadline_ms + LEASE_MARGIN_MS))
    state = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
    if state == "new":
        return Claim(redis_key=target, owner=owner)
    if state == "mismatch":
        raise IdempotencyMismatch()
    if state == "running":
        raise IdempotencyConflict(retry_after_ms=CONFLICT_RETRY_MS)
    return StoredResponse(status=int(reply[1]), body=bytes(reply[2]))


def applies_to(spec: MethodSpec) -> bool:
    """Whether calls of ``spec`` are deduplicated (and so must carry a key): writes, unless an opt-out names them."""
    if not spec.writes or spec.repeatable or settings.RPC_IDEMP_DISABLE:
        return False
    return spec.full_name not in settings.RPC_IDEMP_DISABLE_METHODS
