"""Presence: a user is online while any of its members (sockets, registered sessions) has a fresh heartbeat.

Per user, a sorted set ``presence:m:{u<shard>}:<uid>`` holds members scored by their expiry (now +
LISTENERS_TTL_SECONDS); per user shard (core/keys.py), ``presence:online:{u<shard>}`` holds the shard's online uids
scored by their latest member expiry, so the sweeper finds candidates without scanning the keyspace. A user's members
and its shard's online set share a hash tag, so every change is one single-slot Lua call (atomic across processes,
valid on a Redis Cluster); counting, listing and sweeping are one call per shard, pipelined (one round trip per node).
Each join/leave is announced on ``presence:events`` (classic PUBLISH, heard on every node of a cluster): the listeners
worker reconciles that user's listeners on each announcement.

Members: ``ws:{socket_id}`` (a plain socket), ``ws:{socket_id}|{space_code}|{thread_key}|{mode}`` (a chat socket,
which is how the worker learns which chat threads to watch), ``session:{session_id}`` (a registry session).
Closing one socket never takes a user offline while another member is alive; a process that dies stops heart-beating
and its members expire, then the sweeper takes the user offline.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings

from core.integrations.redis import get_async_redis, get_redis
from core.integrations.redis_scripts import LuaScript
from core.keys import (
    USER_SHARDS,
    presence_members_key,
    presence_members_prefix,
    presence_online_key,
    user_shard,
)

EVENTS_CHANNEL = "presence:events"

# Lua functions, shared with the registry's session scripts (registry/store.py), which join and leave a session's
# member in the same script as the session itself. presence_join returns 1 when the user just came online;
# presence_leave returns 1 when the user just went offline. Both keys share the user's tag (core/keys.py).
LUA_FUNCTIONS = """
local function presence_join(members, online, uid, member, expiry_ms, now_ms, ttl_ms)
  redis.call('ZREMRANGEBYSCORE', members, '-inf', now_ms)
  local before = redis.call('ZCARD', members)
  local is_new = redis.call('ZADD', members, expiry_ms, member)
  redis.call('PEXPIRE', members, ttl_ms)
  local top = redis.call('ZRANGE', members, -1, -1, 'WITHSCORES')
  redis.call('ZADD', online, top[2], uid)
  if before == 0 or is_new == 1 then
    redis.call('PUBLISH', 'presence:events', cjson.encode({uid=uid, online=true, came_online=(before == 0)}))
  end
  if before == 0 then return 1 end
  return 0
end

local function presence_leave(members, online, uid, member, now_ms)
  local removed = redis.call('ZREM', members, member)
  redis.call('ZREMRANGEBYSCORE', members, '-inf', now_ms)
  if redis.call('ZCARD', members) == 0 then
    redis.call('DEL', members)
    if redis.call('ZREM', online, uid) == 1 then
      redis.call('PUBLISH', 'presence:events', cjson.encode({uid=uid, online=false, went_offline=true}))
      return 1
    end
    return 0
  end
  local top = redis.call('ZRANGE', members, -1, -1, 'WITHSCORES')
  redis.call('ZADD', online, top[2], uid)
  if removed == 1 then
    redis.call('PUBLISH', 'presence:events', cjson.encode({uid=uid, online=true}))
  end
  return 0
end
"""

# KEYS: members, online (same tag). ARGV: uid, member, expiry_ms, now_ms, ttl_ms.
_JOIN = LuaScript(LUA_FUNCTIONS + "return presence_join(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])")

# KEYS: members, online (same tag). ARGV: uid, member, now_ms.
_LEAVE = LuaScript(LUA_FUNCTIONS + "return presence_leave(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])")

# KEYS: one shard's online set. ARGV: now_ms, the shard's members prefix, batch. Returns the uids that went offline.
# The members keys it builds carry the shard's tag, so they live in the declared key's slot (allowed on a cluster).
_SWEEP = LuaScript("""
local gone = {}
local uids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, uid in ipairs(uids) do
  local key = ARGV[2] .. uid
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
  if redis.call('ZCARD', key) == 0 then
    redis.call('DEL', key)
    redis.call('ZREM', KEYS[1], uid)
    redis.call('PUBLISH', 'presence:events', cjson.encode({uid=uid, online=false, went_offline=true}))
    table.insert(gone, uid)
  else
    local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    redis.call('ZADD', KEYS[1], top[2], uid)
  end
end
return gone
""")

_SWEEP_BATCH = 500


@dataclass(frozen=True)
class ChatInterest:
    space_code: str
    thread_key: str
    mode: str  # "chats" | "job_chats" | "" (resolve where the thread exists)


def socket_member(socket_id: str, chat: ChatInterest | None = None) -> str:
    if chat is None:
        return f"ws:{socket_id}"
    return f"ws:{socket_id}|{chat.space_code}|{chat.thread_key}|{chat.mode}"


def session_member(session_id: str) -> str:
    return f"session:{session_id}"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _ttl_ms() -> int:
    return settings.LISTENERS_TTL_SECONDS * 1000


def user_keys(uid: str) -> list[str]:
    """The keys a join or leave of this user touches: its members, and its shard's online index (one slot)."""
    return [presence_members_key(uid), presence_online_key(user_shard(uid))]


def join_args(uid: str, member: str, now_ms: int | None = None) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV of presence_join (also for scripts that embed LUA_FUNCTIONS)."""
    now = _now_ms() if now_ms is None else now_ms
    return user_keys(uid), [uid, member, now + _ttl_ms(), now, _ttl_ms() * 2]


def leave_args(uid: str, member: str, now_ms: int | None = None) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV of presence_leave."""
    return user_keys(uid), [uid, member, _now_ms() if now_ms is None else now_ms]


def _sweep_calls() -> list[tuple[list[str], list[str | int]]]:
    now = _now_ms()
    return [([presence_online_key(shard)], [now, presence_members_prefix(shard), _SWEEP_BATCH])
            for shard in range(USER_SHARDS)]


def _gone(replies: list[list[bytes]]) -> list[str]:
    return [uid.decode() for reply in replies for uid in reply]


# A single join/leave sends the script's source (EVAL: one command, no NOSCRIPT round trip after a restart); the
# pipelined heartbeats and sweeps send its SHA (core/integrations/redis_scripts.py).
def _eval_call(script: LuaScript, keys: list[str], args: list[str | int]) -> tuple[str, int, *tuple]:
    return (script.source, len(keys), *keys, *args)


# --- async (consumers) ---------------------------------------------------------------------------------------------
async def ajoin(uid: str, member: str) -> bool:
    """Add or refresh a member (also the heartbeat); True if the user just came online."""
    return bool(await get_async_redis().eval(*_eval_call(_JOIN, *join_args(uid, member))))


async def aleave(uid: str, member: str) -> bool:
    return bool(await get_async_redis().eval(*_eval_call(_LEAVE, *leave_args(uid, member))))


# Members per heartbeat pipeline: one pipeline for 10,000 sockets held the event loop ~0.5 s (packing the commands,
# parsing the replies), which showed in the delivery p99 (bench/ws.py --sockets 10000); frames go out between chunks.
_REFRESH_CHUNK = 500


async def arefresh(members: list[tuple[str, str]]) -> None:
    """Heartbeat many local members in pipelined round trips (each ASGI process does this for its sockets)."""
    for start in range(0, len(members), _REFRESH_CHUNK):
        await _JOIN.run_many_async([join_args(uid, member) for uid, member in members[start : start + _REFRESH_CHUNK]])


async def acount_online() -> int:
    pipe = get_async_redis().pipeline(transaction=False)
    now = _now_ms()
    for shard in range(USER_SHARDS):
        pipe.zcount(presence_online_key(shard), now, "+inf")
    return sum(await pipe.execute())


async def asweep() -> list[str]:
    return _gone(await _SWEEP.run_many_async(_sweep_calls()))


# --- sync (registry sessions, the listeners worker, commands) -----------------------------------------------------
def join(uid: str, member: str) -> bool:
    return bool(get_redis().eval(*_eval_call(_JOIN, *join_args(uid, member))))


def leave(uid: str, member: str) -> bool:
    return bool(get_redis().eval(*_eval_call(_LEAVE, *leave_args(uid, member))))


def sweep() -> list[str]:
    return _gone(_SWEEP.run_many(_sweep_calls()))


def count_online() -> int:
    """Users with a live member: the sum over the shards, one pipelined round trip (per node on a cluster)."""
    pipe = get_redis().pipeline(transaction=False)
    now = _now_ms()
    for shard in range(USER_SHARDS):
        pipe.zcount(presence_online_key(shard), now, "+inf")
    return sum(pipe.execute())


def online_uids() -> list[str]:
    """Users with a member that has not expired yet."""
    pipe = get_redis().pipeline(transaction=False)
    now = _now_ms()
    for shard in range(USER_SHARDS):
        pipe.zrangebyscore(presence_online_key(shard), now, "+inf")
    return [uid.decode() for uids in pipe.execute() for uid in uids]


def is_online(uid: str) -> bool:
    score = get_redis().zscore(presence_online_key(user_shard(uid)), uid)
    return score is not None and score > _now_ms()


def live_members(uid: str) -> list[str]:
    return [m.decode() for m in get_redis().zrangebyscore(presence_members_key(uid), _now_ms(), "+inf")]


def live_members_many(uids: Iterable[str], chunk: int = 1000) -> dict[str, list[str]]:
    """Live members of many users, one pipelined round trip per ``chunk`` users (admin pages, the listeners worker)."""
    wanted = list(dict.fromkeys(uids))
    found: dict[str, list[str]] = {}
    client, now = get_redis(), _now_ms()
    for start in range(0, len(wanted), chunk):
        part = wanted[start : start + chunk]
        pipe = client.pipeline(transaction=False)
        for uid in part:
            pipe.zrangebyscore(presence_members_key(uid), now, "+inf")
        for uid, members in zip(part, pipe.execute()):
            found[uid] = [member.decode() for member in members]
    return found


def chat_interests(members: list[str]) -> set[ChatInterest]:
    """The chat threads that a user's live sockets have open."""
    found = set()
    for member in members:
        if member.startswith("ws:") and member.count("|") == 3:
            _, space_code, thread_key, mode = member.split("|")
            found.add(ChatInterest(space_code, thread_key, mode))
    return found


def parse_event(data: bytes | str) -> dict:
    return json.loads(data)
