"""Idempotency keys in Redis, with Stripe / IETF-draft semantics.

One hash per (API client, acting user, key): ``state`` (running|done), ``fp`` (fingerprint of method + canonical args/kwargs),
``owner`` (the run that holds it), and once done the exact ``status`` and ``body`` bytes of the first completed
response, replayed byte-identical. Claiming and settling are single Lua calls, so concurrent duplicates can never
both run. Retryable failures release the key; a run that outlives its caller's deadline still records its result,
so the retry gets it instead of running the work again.

Expiry policy (the IETF draft asks us to publish it): a completed response is kept ``RPC_IDEMP_TTL`` seconds
(default 900, the original service's); a claim whose process died mid-run expires after the call's deadline plus one
minute.

A write whose whole effect is one Lua script on the acting user's slot (``REGISTRY.unregister_session``) declares a
``ScriptWrite``: its record then lives in the user's slot too (core/keys.py), and claim-or-replay, the write and the
stored response are ONE script (``keyed_script``), one Redis round trip instead of three. The record has the same
fields, so either path replays or refuses what the other stored. There is no ``running`` state: the write and its
record are one atomic step, and a script that fails stores nothing (the key stays free, as after a release).

Only writes use keys. The Reflex app derives a key for every call (SHA-256 of method and arguments), reads included;
replaying a read would hand it stale data, so reads ignore the key, as Stripe does. ``RPC_IDEMP_DISABLE`` and
``RPC_IDEMP_DISABLE_METHODS`` (the original's opt-outs) turn keys off everywhere or for named methods.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis
from django.conf import settings
from redis.exceptions import AskError, ClusterError, ReadOnlyError, TryAgainError

from core import keys
from core.integrations.redis_scripts import LuaScript

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

_SCRIPTS = {script: LuaScript(script) for script in (_CLAIM, _SETTLE)}  # NOSCRIPT-safe (core/integrations/redis_scripts.py)

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
    try:
        return await _SCRIPTS[script].run_async([key], argv)
    except (redis.RedisError, OSError) as exc:
        raise Unavailable("idempotency store unavailable") from exc


def redis_key(scope: str, key: str, user_id: str | None = None) -> str:
    """The record of ``key`` (core/keys.py): named by the key's sha256, because keys are caller-chosen text up to 255
    characters (the Redis key stays short and printable), in the acting user's slot."""
    return keys.idempotency_record_key(scope, hashlib.sha256(key.encode()).hexdigest(), user_id)


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


# Wraps a write's script body (KEYS[1..k], ARGV[1..a], returning a value) into claim-or-replay + write + store. The
# record's key is appended to KEYS; appended to ARGV: fp, ttl_ms, then n pairs (the write's reply as Lua's tostring
# gives it, the response body to store for it), then n. Returns {"mismatch"} | {"running", pttl} |
# {"done", status, body} | {"stored", reply} | {"unknown", reply} (a reply with no body: nothing stored).
_KEYED = """
local nargs = #ARGV
local n = tonumber(ARGV[nargs])
local at = nargs - 2 * n - 2
local record = KEYS[#KEYS]
local cur = redis.call('HMGET', record, 'state', 'fp', 'status', 'body')
if cur[1] then
  if cur[2] ~= ARGV[at] then return {'mismatch'} end
  if cur[1] == 'running' then return {'running', redis.call('PTTL', record)} end
  return {'done', cur[3], cur[4]}
end
local reply = tostring(keyed_write())
for i = at + 2, nargs - 1, 2 do
  if ARGV[i] == reply then
    redis.call('HSET', record, 'state', 'done', 'fp', ARGV[at], 'status', '200', 'body', ARGV[i + 1])
    redis.call('PEXPIRE', record, ARGV[at + 1])
    return {'stored', reply}
  end
end
return {'unknown', reply}
"""


def keyed_script(functions: str, body: str) -> LuaScript:
    """The keyed form of a write script made of Lua ``functions`` and a top-level ``body`` that returns its reply."""
    return LuaScript(f"{functions}\nlocal function keyed_write()\n{body}\nend\n{_KEYED}")


# Redis unreachable or a cluster moving (failover, resharding; a slot without a node arrives as a ConnectionError,
# core/integrations/redis_cluster.py): UNAVAILABLE, as a failed claim is; a retry replays the answer if the script
# did run, else runs it.
_UNREACHABLE = (
    redis.ConnectionError, redis.TimeoutError, ClusterError, TryAgainError, ReadOnlyError, AskError, OSError,
)


@dataclass(frozen=True)
class ScriptWrite:
    """A write that is one script on the acting user's slot: ``script`` (from ``keyed_script``) with the write's own
    ``keys`` and ``args``, and ``results``: the method's result for each reply of the write (as text)."""

    script: LuaScript
    keys: list[str]
    args: list[Any]
    results: dict[str, Any]


@dataclass(frozen=True)
class Stored:
    """The write ran and its response was stored: ``reply`` is the write's own reply (a key of ``results``)."""

    reply: str


async def run_keyed(write: ScriptWrite, *, scope: str, key: str, user_id: str, fp: str,
                    bodies: dict[str, bytes]) -> Stored | StoredResponse:
    """One round trip: replay the stored response, refuse a different call (422) or one in flight on the other path
    (409), or run the write and store ``bodies[reply]``. A failing script stores nothing: INTERNAL (the write's bug,
    logged by the caller) or UNAVAILABLE (Redis unreachable)."""
    pairs: list[str | bytes] = []
    for reply, body in bodies.items():
        pairs += (reply, body)
    args = [*write.args, fp, str(settings.RPC_IDEMP_TTL * 1000), *pairs, str(len(bodies))]
    try:
        reply = await write.script.run_async([*write.keys, redis_key(scope, key, user_id)], args)
    except _UNREACHABLE as exc:  # any other error (the script itself failed) goes up: the caller logs it, INTERNAL
        raise Unavailable("idempotency store unavailable") from exc
    state = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
    if state == "stored":
        return Stored(reply[1].decode() if isinstance(reply[1], bytes) else reply[1])
    if state == "done":
        return StoredResponse(status=int(reply[1]), body=bytes(reply[2]))
    if state == "mismatch":
        raise IdempotencyMismatch()
    if state == "running":
        raise IdempotencyConflict(retry_after_ms=CONFLICT_RETRY_MS)
    raise LookupError(f"the write replied {reply[1]!r}, which has no result")  # the method's bug: INTERNAL
