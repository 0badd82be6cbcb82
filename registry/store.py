"""Registered sessions in Redis: one Lua script per user slot for every change, so register, heartbeat and
unregister are one round trip each and O(1) whatever the number of sessions (README, "Session registry").

Per session a hash ``session_key(uid, sid)``; per user the set of its session ids; per user shard a sorted set of
``"<uid> <sid>"`` scored by expiry (the sweeper's and the admin's index) and a list of ended sessions waiting to be
written to SQL (``SessionRecord``, the audit history). All of them share the user's hash tag (core/keys.py), and so
does the user's presence, which the same script joins or leaves (realtime.presence.LUA_FUNCTIONS): a session and its
presence member can never disagree.

Session ids are a per-user namespace: another user's session id simply does not exist for the acting user (issue 16
rule 6), which is why every entry point takes the uid.
"""
from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from core import keys
from core.integrations.redis import get_redis
from core.integrations.redis_scripts import LuaScript
from realtime import presence

_RECORD_END = """
local function record_end(reason, ended_ms)
  local fields = redis.call('HGETALL', KEYS[1])
  if #fields == 0 then return end
  local record = {reason=reason, ended=ended_ms}
  for i = 1, #fields, 2 do record[fields[i]] = fields[i + 1] end
  redis.call('RPUSH', KEYS[4], cjson.encode(record))
end

local function keep_index(ttl_ms)
  -- the user's set lives as long as its longest-lived session
  if redis.call('PTTL', KEYS[2]) < tonumber(ttl_ms) then redis.call('PEXPIRE', KEYS[2], ttl_ms) end
end
"""

# KEYS: session, user's sessions, shard expiry index, shard history, presence members, presence online.
# ARGV: uid, sid, index member, presence member, now_ms, expires_ms, keep_ms, presence expiry_ms, presence ttl_ms,
#       route ('' = none), companies JSON ('' = none). Returns the session's created_at (ms).
_REGISTER = presence.LUA_FUNCTIONS + _RECORD_END + """
local now = tonumber(ARGV[5])
local created = now
local previous = tonumber(redis.call('HGET', KEYS[1], 'expires') or '0')
if previous > now then
  created = tonumber(redis.call('HGET', KEYS[1], 'created'))
elseif previous > 0 then
  record_end('expired', previous)  -- lapsed and not swept yet: it ended at its expiry; this is a new session
  redis.call('DEL', KEYS[1])
end
redis.call('HSET', KEYS[1], 'uid', ARGV[1], 'sid', ARGV[2], 'created', created, 'seen', now, 'expires', ARGV[6])
if ARGV[10] ~= '' then redis.call('HSET', KEYS[1], 'route', ARGV[10]) else redis.call('HDEL', KEYS[1], 'route') end
if ARGV[11] ~= '' then redis.call('HSET', KEYS[1], 'companies', ARGV[11]) else redis.call('HDEL', KEYS[1], 'companies') end
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('SADD', KEYS[2], ARGV[2])
keep_index(ARGV[7])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[3])
presence_join(KEYS[5], KEYS[6], ARGV[1], ARGV[4], ARGV[8], ARGV[5], ARGV[9])
return created
"""

# Same KEYS. ARGV: uid, sid, index member, presence member, now_ms, expires_ms, keep_ms, presence expiry_ms,
# presence ttl_ms. Returns created_at (ms), or nil when the session does not exist or has lapsed.
_HEARTBEAT = presence.LUA_FUNCTIONS + _RECORD_END + """
local now = tonumber(ARGV[5])
local fields = redis.call('HMGET', KEYS[1], 'expires', 'created')
if not fields[1] or tonumber(fields[1]) <= now then return false end
redis.call('HSET', KEYS[1], 'seen', now, 'expires', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
keep_index(ARGV[7])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[3])
presence_join(KEYS[5], KEYS[6], ARGV[1], ARGV[4], ARGV[8], ARGV[5], ARGV[9])
return tonumber(fields[2])
"""

# Same KEYS. ARGV: uid, sid, index member, presence member, now_ms, reason, due_ms ('' = end it whatever its expiry;
# else only if it expires at or before due_ms, ending at its expiry: the sweep, which must not undo a heartbeat).
# Returns -1 when there was nothing to end, 1 when the user went offline with it, else 0. Kept as (functions, body):
# REGISTRY.unregister_session runs the body inside its idempotency script (rpc.idempotency.keyed_script).
END_PARTS = (presence.LUA_FUNCTIONS + _RECORD_END, """
local expires = redis.call('HGET', KEYS[1], 'expires')
if not expires then
  redis.call('ZREM', KEYS[3], ARGV[3])
  redis.call('SREM', KEYS[2], ARGV[2])
  return -1
end
local ended = ARGV[5]
if ARGV[7] ~= '' then
  if tonumber(expires) > tonumber(ARGV[7]) then return -1 end
  ended = expires
end
record_end(ARGV[6], tonumber(ended))
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[3])
return presence_leave(KEYS[5], KEYS[6], ARGV[1], ARGV[4], ARGV[5])
""")
_END = "".join(END_PARTS)


class _Script(LuaScript):
    """EVALSHA with a fallback to EVAL, on one Redis or on the node of a cluster that owns the user's slot."""

    async def acall(self, keys_: list[str], args: list[Any]) -> Any:
        return await self.run_async(keys_, args)


REGISTER, HEARTBEAT, END = _Script(_REGISTER), _Script(_HEARTBEAT), _Script(_END)

CLOSED, EXPIRED = "closed", "expired"


@dataclass(frozen=True)
class SessionInfo:
    user_id: str
    session_id: str
    backend_route: str | None
    authorized_companies: list[str] | None
    created_at: dt.datetime
    last_seen_at: dt.datetime
    expires_at: dt.datetime

    def state(self, now: dt.datetime) -> str:
        """online until its expiry, expired after it (until the sweeper moves it to the history)."""
        return "online" if self.expires_at > now else EXPIRED


def now_ms() -> int:
    return int(time.time() * 1000)


def from_ms(ms: int | str | bytes) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(ms) / 1000, tz=dt.timezone.utc)


def index_member(uid: str, sid: str) -> str:
    # Neither id may contain a space (rpc.types.Identifier forbids control characters and '/', registry ids are
    # Identifier-typed, and uids are too): the first space splits them.
    return f"{uid} {sid}"


def split_index_member(member: bytes | str) -> tuple[str, str]:
    text = member.decode() if isinstance(member, bytes) else member
    uid, _, sid = text.partition(" ")
    return uid, sid


def _keys(uid: str, sid: str) -> list[str]:
    shard = keys.user_shard(uid)
    return [
        keys.session_key(uid, sid), keys.user_sessions_key(uid), keys.session_expiry_key(shard),
        keys.session_history_key(shard), *presence.user_keys(uid),
    ]


def _lifetimes(now: int) -> tuple[int, int]:
    """(expires_ms, keep_ms): a session ends REGISTRY_SESSION_TTL after its last sign of life; its hash is kept as
    long again, so the sweeper can still write it to the history after a long outage (then Redis drops it)."""
    ttl_ms = settings.REGISTRY_SESSION_TTL * 1000
    return now + ttl_ms, ttl_ms * 2


def register_call(uid: str, sid: str, route: str | None, companies: list[str] | None) -> tuple[list[str], list[Any]]:
    now = now_ms()
    expires, keep = _lifetimes(now)
    _, (_, member, p_expiry, _, p_ttl) = presence.join_args(uid, presence.session_member(sid), now)
    companies_json = json.dumps(companies) if companies is not None else ""
    return _keys(uid, sid), [
        uid, sid, index_member(uid, sid), member, now, expires, keep, p_expiry, p_ttl, route or "", companies_json,
    ]


def heartbeat_call(uid: str, sid: str) -> tuple[list[str], list[Any]]:
    now = now_ms()
    expires, keep = _lifetimes(now)
    _, (_, member, p_expiry, _, p_ttl) = presence.join_args(uid, presence.session_member(sid), now)
    return _keys(uid, sid), [uid, sid, index_member(uid, sid), member, now, expires, keep, p_expiry, p_ttl]


def end_call(uid: str, sid: str, reason: str, due_ms: int | None = None) -> tuple[list[str], list[Any]]:
    return _keys(uid, sid), [
        uid, sid, index_member(uid, sid), presence.session_member(sid), now_ms(), reason,
        "" if due_ms is None else due_ms,
    ]


# --- reads ---------------------------------------------------------------------------------------------------------
def _parse(fields: dict[bytes, bytes]) -> SessionInfo | None:
    if not fields or b"expires" not in fields:
        return None
    companies = fields.get(b"companies")
    route = fields.get(b"route")
    return SessionInfo(
        user_id=fields[b"uid"].decode(),
        session_id=fields[b"sid"].decode(),
        backend_route=route.decode() if route is not None else None,
        authorized_companies=json.loads(companies) if companies is not None else None,
        created_at=from_ms(fields[b"created"]),
        last_seen_at=from_ms(fields[b"seen"]),
        expires_at=from_ms(fields[b"expires"]),
    )


def get_sessions(pairs: Iterable[tuple[str, str]]) -> list[SessionInfo]:
    """The sessions that exist (live or lapsed, not swept) among these (uid, sid) pairs: one pipelined round trip."""
    wanted = list(dict.fromkeys(pairs))
    if not wanted:
        return []
    pipe = get_redis().pipeline(transaction=False)
    for uid, sid in wanted:
        pipe.hgetall(keys.session_key(uid, sid))
    return [info for info in map(_parse, pipe.execute()) if info is not None]


def user_sessions(uid: str) -> list[SessionInfo]:
    """Every session of the user (live or lapsed), two round trips whatever the number of users."""
    sids = [sid.decode() for sid in get_redis().smembers(keys.user_sessions_key(uid))]
    return get_sessions((uid, sid) for sid in sids)


def shard_members(*, live: bool | None, limit: int) -> list[tuple[str, str, int]]:
    """(uid, sid, expires_ms) from every shard's expiry index, latest expiry first, at most ``limit``: one pipelined
    round trip (``live``: True only live, False only lapsed, None both)."""
    now = now_ms()
    low, high = {True: (now + 1, "+inf"), False: ("-inf", now), None: ("-inf", "+inf")}[live]
    pipe = get_redis().pipeline(transaction=False)
    for shard in range(keys.USER_SHARDS):
        pipe.zrevrangebyscore(keys.session_expiry_key(shard), high, low, start=0, num=limit, withscores=True)
    found = [
        (*split_index_member(member), int(score)) for rows in pipe.execute() for member, score in rows
    ]
    found.sort(key=lambda row: row[2], reverse=True)
    return found[:limit]


def find_by_session_id(sid: str, *, limit: int) -> list[tuple[str, str, int]]:
    """Index entries with this session id, whoever's (staff search; ZSCAN of every shard, never on a request path)."""
    pattern = "* " + "".join(f"\\{c}" if c in "*?[]\\" else c for c in sid)
    client, found = get_redis(), []
    for shard in range(keys.USER_SHARDS):
        for member, score in client.zscan_iter(keys.session_expiry_key(shard), match=pattern, count=1000):
            found.append((*split_index_member(member), int(score)))
            if len(found) >= limit:
                return found
    return found


def count_by_state() -> dict[str, int]:
    """Live and lapsed (not yet swept) sessions over every shard: one pipelined round trip."""
    now = now_ms()
    pipe = get_redis().pipeline(transaction=False)
    for shard in range(keys.USER_SHARDS):
        pipe.zcount(keys.session_expiry_key(shard), now + 1, "+inf")
        pipe.zcount(keys.session_expiry_key(shard), "-inf", now)
    replies = pipe.execute()
    return {"online": sum(replies[::2]), "expired": sum(replies[1::2])}


def due_for_sweep(now: int, batch: int) -> list[tuple[str, str]]:
    """Lapsed sessions, up to ``batch`` per shard: one pipelined round trip."""
    pipe = get_redis().pipeline(transaction=False)
    for shard in range(keys.USER_SHARDS):
        pipe.zrangebyscore(keys.session_expiry_key(shard), "-inf", now, start=0, num=batch)
    return [split_index_member(member) for rows in pipe.execute() for member in rows]


def run_many(calls: list[tuple[list[str], list[Any]]], script: _Script) -> list[Any]:
    """Run one script for many users in one pipelined round trip (per node on a cluster: the sweep, staff actions)."""
    return script.run_many(calls)


def pop_history(batch: int) -> list[dict[str, Any]]:
    """Take up to ``batch`` ended-session records from each shard's history list (LPOP count: atomic, so two
    flushers never take the same record)."""
    pipe = get_redis().pipeline(transaction=False)
    for shard in range(keys.USER_SHARDS):
        pipe.lpop(keys.session_history_key(shard), batch)
    return [json.loads(item) for items in pipe.execute() if items for item in items]


def push_back_history(records: list[dict[str, Any]]) -> None:
    """Return records that could not be written (the database is down): the next flush tries again."""
    pipe = get_redis().pipeline(transaction=False)
    for record in records:
        pipe.rpush(keys.session_history_key(keys.user_shard(record["uid"])), json.dumps(record))
    pipe.execute()
