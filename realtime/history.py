"""Reading a channel's history for recovery: either every missed event, in order, or an explicit failure.

Like Centrifugo, recovery is never partial: if the stream no longer holds the event right after ``since`` (trimmed by
LISTENERS_HISTORY_SIZE, expired after LISTENERS_HISTORY_TTL), or the channel's epoch changed (Redis lost its data and
the counter restarted), the caller gets ``None`` and must tell the client to re-sync.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.integrations.redis import get_async_redis

from .channels import history_key, seq_key

_MAX_REPLAY = 10_000


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
    client = get_async_redis()
    async with client.pipeline(transaction=True) as pipe:
        pipe.hmget(seq_key(channel), "n", "epoch")
        pipe.xrange(history_key(channel), min=f"({since}-0", max="+", count=_MAX_REPLAY)
        raw_position, entries = await pipe.execute()
    return _evaluate(since, _position(raw_position), entries, epoch)


async def position(channel: str) -> Position:
    return _position(await get_async_redis().hmget(seq_key(channel), "n", "epoch"))
