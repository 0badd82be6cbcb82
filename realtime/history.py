"""Reading a channel's history for recovery: either every missed event, in order, or an explicit failure.

Like Centrifugo, recovery is never partial: if the stream no longer holds the event right after ``since`` (trimmed by
LISTENERS_HISTORY_SIZE, expired after LISTENERS_HISTORY_TTL), or the channel's epoch changed (Redis lost its data and
the counter restarted), the caller gets ``None`` and must tell the client to re-sync.
"""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from redis.exceptions import ClusterDownError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError

from core.integrations.redis import get_async_redis, is_cluster
from core.integrations.redis_scripts import LuaScript

from .channels import SEQ_TTL_S, history_key, seq_key

_MAX_REPLAY = 10_000
# On a cluster the dispatcher resubscribes on another node as soon as one answers and asks every socket to catch up,
# possibly while other masters are still restarting or the cluster is re-forming (CLUSTERDOWN): the catch-up waits for
# that, up to this long, instead of closing the socket. On a single Redis, reconnecting already means it is back.
_CLUSTER_FORMING_S = 10.0
T = TypeVar("T")


async def _while_cluster_forms(read: Callable[[], Awaitable[T]]) -> T:
    if not is_cluster():
        return await read()
    deadline = asyncio.get_running_loop().time() + _CLUSTER_FORMING_S
    delay = 0.02
    while True:
        try:
            return await read()
        except (ClusterDownError, TryAgainError, RedisConnectionError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

# KEYS: the channel's seq hash and history (one slot: both carry the {channel} tag). ARGV: since, max entries.
# One atomic read, as a script rather than MULTI: redis-py 6.4's asyncio cluster transaction fails to parse XRANGE.
_READ = LuaScript("""
return {redis.call('HMGET', KEYS[1], 'n', 'epoch'),
        redis.call('XRANGE', KEYS[2], '(' .. ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])}
""")

# KEYS: the channel's seq hash. ARGV: a fresh epoch id, the hash's TTL. A channel that has no epoch gets one, so a
# socket opening on it knows the epoch its first event will carry. The publisher's script agrees: it keeps an epoch
# it finds (HSETNX on the first seq) and renews the TTL on every event.
_START = LuaScript("""
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1]) == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return redis.call('HMGET', KEYS[1], 'n', 'epoch')
""")


@dataclass(frozen=True)
class Position:
    seq: int
    epoch: str | None  # None: nothing was ever published on this channel (or it all expired)


@dataclass(frozen=True)
class Recovery:
    events: list[bytes]
    position: Position


def _position(raw: list) -> Position:
    seq, epoch = raw
    return Position(int(seq or 0), epoch.decode() if epoch else None)


def _evaluate(since: int, position: Position, entries: list, epoch: str | None) -> Recovery | None:
    if epoch is not None and position.epoch != epoch:
        return None  # the counter restarted: numbers from before mean nothing now
    if since > position.seq:
        return None  # the client saw numbers this channel has not reached: its history is from another epoch
    messages: list[bytes] = []
    expected = since + 1
    for entry_id, fields in entries:
        seq = int(entry_id.split(b"-")[0])
        if seq > position.seq:
            break  # published after the counter was read: the live stream delivers it
        if seq != expected:
            return None  # a hole: the event right after `since` was trimmed or expired
        messages.append(fields[b"m"])
        expected += 1
    if expected != position.seq + 1:
        return None
    return Recovery(messages, position)


async def recover(channel: str, since: int, epoch: str | None = None) -> Recovery | None:
    """Events after ``since`` up to now; ``epoch`` (when known) must still be the channel's."""
    raw_position, raw_entries = await _while_cluster_forms(
        lambda: _READ.run_async([seq_key(channel), history_key(channel)], [since, _MAX_REPLAY])
    )
    entries = [(entry_id, dict(zip(flat[::2], flat[1::2]))) for entry_id, flat in raw_entries]
    return _evaluate(since, _position(raw_position), entries, epoch)


async def position(channel: str) -> Position:
    return _position(await _while_cluster_forms(lambda: get_async_redis().hmget(seq_key(channel), "n", "epoch")))


async def start_position(channel: str) -> Position:
    """Where a socket opening on ``channel`` starts, the epoch included: a channel with none (nothing published yet,
    or all expired) gets one now, atomically, instead of at its first event. One round trip, as ``position``."""
    return _position(await _while_cluster_forms(
        lambda: _START.run_async([seq_key(channel)], [uuid.uuid4().hex, SEQ_TTL_S])
    ))
