"""Presence: a user is online while any of its members (sockets, registered sessions) has a fresh heartbeat.

Per user, a sorted set ``presence:m:{uid}`` holds members scored by their expiry (now + LISTENERS_TTL_SECONDS);
``presence:online`` holds online uids scored by their latest member expiry, so the sweeper finds candidates without
scanning the keyspace. Every change is one Lua call (atomic across processes), and each join/leave is announced on
``presence:events`` — the listeners worker reconciles that user's listeners on each announcement.

Members: ``ws:{socket_id}`` (a plain socket), ``ws:{socket_id}|{space_code}|{thread_key}|{mode}`` (a chat socket,
which is how the worker learns which chat threads to watch), ``session:{session_id}`` (a registry session).
Closing one socket never takes a user offline while another member is alive; a process that dies stops heart-beating
and its members expire, then the sweeper takes the user offline.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Iterable

from django.conf import settings

from core.integrations.redis import get_async_redis, get_redis

ONLINE_KEY = "presence:online"
MEMBERS_PREFIX = "presence:m:"
EVENTS_CHANNEL = "presence:events"

# Lua functions, shared with the registry's session scripts (registry/store.py), which join and leave a session's
# member in the same script as the session itself. presence_join returns 1 when the user just came online;
# presence_leave returns 1 when the user just went offline.
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

# KEYS: members, online. ARGV: uid, member, expiry_ms, now_ms, ttl_ms.
_JOIN = LUA_FUNCTIONS + "return presence_join(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])"

# KEYS: members, online. ARGV: uid, member, now_ms.
_LEAVE = LUA_FUNCTIONS + "return presence_leave(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])"

# KEYS: online. ARGV: now_ms, members prefix, batch. Returns the uids that went offline.
# (It touches per-user keys it can't declare up front: fine on a single Redis/Valkey, documented for Cluster.)
_SWEEP = """
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
"""

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
    """The keys a join or leave of this user touches: its members, and the online index that lists it."""
    return [MEMBERS_PREFIX + uid, ONLINE_KEY]


def join_args(uid: str, member: str, now_ms: int | None = None) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV of presence_join (also for scripts that embed LUA_FUNCTIONS)."""
    now = _now_ms() if now_ms is None else now_ms
    return user_keys(uid), [uid, member, now + _ttl_ms(), now, _ttl_ms() * 2]


def leave_args(uid: str, member: str, now_ms: int | None = None) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV of presence_leave."""
    return user_keys(uid), [uid, member, _now_ms() if now_ms is None else now_ms]


# --- async (consumers) ---------------------------------------------------------------------------------------------
async def ajoin(uid: str, member: str) -> bool:
    """Add or refresh a member (also the heartbeat); True if the user just came online."""
    keys, args = join_args(uid, member)
    return bool(await get_async_redis().eval(_JOIN, len(keys), *keys, *args))


async def aleave(uid: str, member: str) -> bool:
    keys, args = leave_args(uid, member)
    return bool(await get_async_redis().eval(_LEAVE, len(keys), *keys, *args))


async def arefresh(members: list[tuple[str, str]]) -> None:
    """Heartbeat many local members in one pipelined round trip (each ASGI process does this for its sockets)."""
    if not members:
        return
    client = get_async_redis()
    script = client.register_script(_JOIN)
    async with client.pipeline(transaction=False) as pipe:
        for uid, member in members:
            keys, args = join_args(uid, member)
            await script(keys=keys, args=args, client=pipe)
        await pipe.execute()


async def acount_online() -> int:
    return int(await get_async_redis().zcount(ONLINE_KEY, _now_ms(), "+inf"))


async def asweep() -> list[str]:
    gone = await get_async_redis().eval(_SWEEP, 1, ONLINE_KEY, _now_ms(), MEMBERS_PREFIX, _SWEEP_BATCH)
    return [uid.decode() for uid in gone]


# --- sync (registry sessions, the listeners worker, commands) -----------------------------------------------------
def join(uid: str, member: str) -> bool:
    keys, args = join_args(uid, member)
    return bool(get_redis().eval(_JOIN, len(keys), *keys, *args))


def leave(uid: str, member: str) -> bool:
    keys, args = leave_args(uid, member)
    return bool(get_redis().eval(_LEAVE, len(keys), *keys, *args))


def sweep() -> list[str]:
    gone = get_redis().eval(_SWEEP, 1, ONLINE_KEY, _now_ms(), MEMBERS_PREFIX, _SWEEP_BATCH)
    return [uid.decode() for uid in gone]


def online_uids() -> list[str]:
    """Users with a member that has not expired yet."""
    return [uid.decode() for uid in get_redis().zrangebyscore(ONLINE_KEY, _now_ms(), "+inf")]


def is_online(uid: str) -> bool:
    score = get_redis().zscore(ONLINE_KEY, uid)
    return score is not None and score > _now_ms()


def live_members(uid: str) -> list[str]:
    return [m.decode() for m in get_redis().zrangebyscore(MEMBERS_PREFIX + uid, _now_ms(), "+inf")]


def live_members_many(uids: Iterable[str], chunk: int = 1000) -> dict[str, list[str]]:
    """Live members of many users, one pipelined round trip per ``chunk`` users (admin pages, the listeners worker)."""
    wanted = list(dict.fromkeys(uids))
    found: dict[str, list[str]] = {}
    client, now = get_redis(), _now_ms()
    for start in range(0, len(wanted), chunk):
        part = wanted[start : start + chunk]
        pipe = client.pipeline(transaction=False)
        for uid in part:
            pipe.zrangebyscore(MEMBERS_PREFIX + uid, now, "+inf")
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
