"""Test helpers for Redis sessions: make a session lapse without waiting REGISTRY_SESSION_TTL."""
from __future__ import annotations

from core import keys
from core.integrations.redis import get_redis
from registry import store


def lapse(user_id: str, session_id: str, seconds_ago: int = 1) -> None:
    """Move the session's expiry into the past, in its hash and in its shard's expiry index (as time would)."""
    expired_ms = store.now_ms() - seconds_ago * 1000
    client = get_redis()
    client.hset(keys.session_key(user_id, session_id), "expires", expired_ms)
    client.zadd(keys.session_expiry_key(keys.user_shard(user_id)), {store.index_member(user_id, session_id): expired_ms})


def expires_ms(user_id: str, session_id: str) -> int | None:
    value = get_redis().hget(keys.session_key(user_id, session_id), "expires")
    return None if value is None else int(value)
