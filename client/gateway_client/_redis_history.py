"""Reading a channel's event history straight from the gateway's Redis (the Redis transport of EventConsumer).

The gateway keeps, per channel, a counter hash ``rt:{<channel>}:seq`` (``n`` = last seq, ``epoch`` = id of the
counter's lifetime) and a stream ``rt:{<channel>}:hist`` whose entry ids are ``<seq>-0`` with the envelope in field
``m`` (realtime/channels.py and realtime/publisher.py). Its publish is one Lua call (XADD then PUBLISH), so anything
a subscriber receives is already in the stream. Recovery follows the gateway's own rule (realtime/history.py): all
the events after ``since`` or nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def seq_key(channel: str) -> str:
    return f"rt:{{{channel}}}:seq"


def history_key(channel: str) -> str:
    return f"rt:{{{channel}}}:hist"


@dataclass(frozen=True)
class Position:
    seq: int
    epoch: str | None


def _position(seq: Any, epoch: Any) -> Position:
    return Position(int(seq or 0), epoch.decode() if isinstance(epoch, bytes) else epoch)


async def position(client: Any, channel: str) -> Position:
    return _position(*await client.hmget(seq_key(channel), "n", "epoch"))


# One atomic read of both keys (they share the {channel} hash tag, so this works on a Redis Cluster too, where redis-py
# 6.4's asyncio transaction cannot parse XRANGE).
_READ = """
return {redis.call('HMGET', KEYS[1], 'n', 'epoch'), redis.call('XRANGE', KEYS[2], '(' .. ARGV[1] .. '-0', '+')}
"""


async def read(client: Any, channel: str, *, after: int) -> tuple[Position, list]:
    """The channel's position and its history entries after seq ``after``, read atomically."""
    (seq, epoch), raw = await client.eval(_READ, 2, seq_key(channel), history_key(channel), after)
    entries = [(entry_id, dict(zip(flat[::2], flat[1::2]))) for entry_id, flat in raw]
    return _position(seq, epoch), entries


def recover(since: int, position: Position, entries: list, epoch: str | None) -> list[bytes] | None:
    """The envelopes after ``since`` up to ``position``, or None when the history can't provide every one of them."""
    if epoch is not None and position.epoch != epoch:
        return None  # the counter restarted (Redis lost its data): old numbers mean nothing now
    if since > position.seq:
        return None
    messages: list[bytes] = []
    expected = since + 1
    for entry_id, fields in entries:
        raw_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        seq = int(raw_id.split("-")[0])
        if seq > position.seq:
            break  # published after the position was read: it arrives live
        if seq != expected:
            return None  # trimmed or expired: the event right after `since` is gone
        messages.append(fields[b"m"] if b"m" in fields else fields["m"])
        expected += 1
    return messages if expected == position.seq + 1 else None
