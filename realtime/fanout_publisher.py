"""Fan-out: one ``user:*`` event to many users (e.g. a company-wide notification), ``publish_to_many``.

Every recipient gets its own seq and history entry (so ``since`` recovers it like any event), but a chunk of
FANOUT_CHUNK recipients is one Lua call that PUBLISHes one batched message on LISTENERS_FANOUT_CHANNEL
(realtime/fanout.py), which every gateway process delivers to its local sockets.

On one Redis the chunks' scripts are streamed on one connection (each sent as soon as it is built, the replies read
behind them, at most _FANOUT_WINDOW in flight): Valkey runs chunk k, and the gateways write its frames, while this
thread builds chunk k+1, with no round trip in between.

Redis Cluster: the recipients of a chunk are grouped by slot: one group is one script that also PUBLISHes; several
groups are one append script per slot, each node's sent in one write on one of its connections (one round trip per
node, all nodes at once), then one PUBLISH of the batched message.

A chunk's script is idempotent (its marker in its first recipient's seq hash), so the retry queue may run a chunk
whose reply was lost: it gets the same seqs back.
"""
from __future__ import annotations

import functools
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Iterable

import redis
from django.conf import settings
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError, NoScriptError, RedisClusterException, TryAgainError

from core import provenance
from core.integrations.redis import get_redis, is_cluster
from core.integrations.redis_scripts import LuaScript, group_by_slot
from core.metrics import EVENT_PUBLISH_FAILURES

from . import fanout
from .channels import SEQ_TTL_S, history_key, namespace_of, seq_key, user_channel
from .envelope import EnvelopeParts, fanout_event_id, uid_json
from .events import CHAT_PREFIX
from .publishing import APPEND_LUA, PublishResult, count_published, log, log_published, retry_queue

# A fan-out chunk's script first looks for its marker, a field of its first recipient's seq hash ('fanout': the event
# id base and the seqs the chunk assigned; realtime/channels.py): when a node dies after running the script but before
# its reply arrives (or redis-py re-sends it after a broken connection), the retry queue runs the chunk again and gets
# the same seqs back instead of appending the event to every recipient again under a new seq. A field of a hash the
# script writes anyway: no extra key, no memory per fan-out, and it lives as long as the seq itself. It holds the
# first recipient's latest fan-out chunk only, which is the one a retry asks about: the retry queue keeps order, so
# nothing of this process reaches that channel in between (another process could, as for a single event's 'last').
# The retry publishes nothing: the first run PUBLISHed in the same atomic script (subscribers that lost that node
# resync from history); on a cluster the caller announces the slot's recipients after the reply (a lost reply was
# never announced), and the gateway drops a seq it has already sent. The seqs come back as one string "7,3,…" (the
# message's own seq list).
_ASSIGNED_BEFORE_LUA = """
local function assigned_before(seq_key, event_id_base)
  local done = redis.call('HGET', seq_key, 'fanout')
  if done and string.sub(done, 1, #event_id_base + 1) == event_id_base .. ':' then
    return string.sub(done, #event_id_base + 2)
  end
end
"""
# KEYS: (seq hash, history) per recipient. ARGV: fan-out channel, fan-out message prefix, envelope head, middle, event
# id base, tail, history size, history ttl s, seq ttl s, fresh epoch, then each recipient's JSON-encoded uid.
_FANOUT = LuaScript(APPEND_LUA + _ASSIGNED_BEFORE_LUA + """
local done = assigned_before(KEYS[1], ARGV[5])
if done then return done end
local seqs = {}
for i = 1, #KEYS / 2 do
  local envelope = ARGV[3] .. ARGV[10 + i] .. ARGV[4] .. ARGV[5] .. string.format('%08x', i - 1) .. ARGV[6]
  seqs[i] = append(KEYS[2 * i - 1], KEYS[2 * i], envelope, ARGV[7], ARGV[8], ARGV[9], ARGV[10])
end
local assigned = table.concat(seqs, ',')
redis.call('HSET', KEYS[1], 'fanout', ARGV[5] .. ':' .. assigned)
redis.call('PUBLISH', ARGV[1], ARGV[2] .. assigned .. ']}')
return assigned
""")
# Cluster fan-out, one slot's recipients (no PUBLISH: the caller sends one message for all slots).
# KEYS: (seq hash, history) per recipient. ARGV: envelope head, middle, event id base, tail, history size, history
# ttl s, seq ttl s, fresh epoch, then per recipient its JSON-encoded uid and its position in the fan-out chunk.
_APPEND_MANY = LuaScript(APPEND_LUA + _ASSIGNED_BEFORE_LUA + """
local done = assigned_before(KEYS[1], ARGV[3])
if done then return done end
local seqs = {}
for i = 1, #KEYS / 2 do
  local position = string.format('%08x', tonumber(ARGV[8 + 2 * i]))
  local envelope = ARGV[1] .. ARGV[7 + 2 * i] .. ARGV[2] .. ARGV[3] .. position .. ARGV[4]
  seqs[i] = append(KEYS[2 * i - 1], KEYS[2 * i], envelope, ARGV[5], ARGV[6], ARGV[7], ARGV[8])
end
local assigned = table.concat(seqs, ',')
redis.call('HSET', KEYS[1], 'fanout', ARGV[3] .. ':' .. assigned)
return assigned
""")

# Recipients per fan-out Lua call (and per batched message): bounds how long one script holds Redis, and how soon the
# gateways start writing a fan-out's frames: they deliver one chunk while Valkey runs the next. 250 rather than 1,000:
# a fan-out to 1,000 users 29 -> 25 ms to its last frame, to 10,000 unchanged (README "Benchmarks", fan-out). Every
# chunk the same size: a small first one (50, then 250 or 500) and 100 or 500 throughout measured no better.
FANOUT_CHUNK = 250
# Chunk scripts sent ahead of their replies on the streaming connection (one Redis): Valkey always has the next one.
_FANOUT_WINDOW = 8


@dataclass(frozen=True)
class _PendingFanout:
    """One event for up to FANOUT_CHUNK users' channels, published as one batched message."""

    uids: list[str]
    parts: EnvelopeParts
    event_id_base: str
    event_type: str

    @functools.cached_property
    def channels(self) -> list[str]:
        prefix = user_channel("")  # user_channel(uid) is prefix + uid: settings read once per chunk, not per recipient
        return [prefix + uid for uid in self.uids]

    def script_call(self) -> tuple[list[str], list[Any]]:
        keys: list[str] = []
        for channel in self.channels:
            keys += [seq_key(channel), history_key(channel)]
        namespace = namespace_of(self.channels[0])
        args = [
            settings.LISTENERS_FANOUT_CHANNEL, fanout.message_prefix(self.parts, self.event_id_base, self.uids),
            self.parts.head, self.parts.middle, self.event_id_base, self.parts.tail,
            namespace.history_size, namespace.history_ttl_s, SEQ_TTL_S, uuid.uuid4().hex,
            *(uid_json(uid) for uid in self.uids),
        ]
        return keys, args

    def publish_now(self) -> list[int]:
        keys, args = self.script_call()
        return self.published(_assigned_seqs(_FANOUT(keys, args)))

    def published(self, seqs: list[int]) -> list[int]:
        count_published(self.event_type, len(self.uids))
        if log.isEnabledFor(logging.DEBUG):
            for channel, seq in zip(self.channels, seqs):
                log_published(channel, self.event_type, seq)
        return seqs

    def results(self, seqs: list[int | None] | None) -> list[PublishResult]:
        seqs = seqs if seqs is not None else [None] * len(self.uids)
        return [
            PublishResult(channel, fanout_event_id(self.event_id_base, index), seqs[index], queued=seqs[index] is None)
            for index, channel in enumerate(self.channels)
        ]

    def slot_groups(self) -> list[_SlotGroup]:
        """The recipients by the slot of their channel keys: one group on a single Redis."""
        channels = self.channels
        groups = group_by_slot(range(len(self.uids)), lambda position: seq_key(channels[position]))
        namespace = namespace_of(channels[0])
        # What every group's script call shares, built once per chunk. The fresh epoch only names a seq hash this run
        # creates: one per chunk, as the single-slot script has.
        shared = (self.parts.head, self.parts.middle, self.event_id_base, self.parts.tail, namespace.history_size,
                  namespace.history_ttl_s, SEQ_TTL_S, uuid.uuid4().hex)
        return [_SlotGroup([self.uids[position] for position in group], group,
                           [channels[position] for position in group], shared, self.parts, self.event_id_base,
                           self.event_type) for group in groups]

    def describe(self) -> dict[str, Any]:
        return {"fanout_recipients": len(self.uids), "event_id_base": self.event_id_base}


@dataclass(frozen=True)
class _SlotGroup:
    """Cluster fan-out: the recipients of one chunk whose channel keys share a slot, with their positions in it."""

    uids: list[str]
    positions: list[int]
    channels: list[str]
    shared_args: tuple[Any, ...]  # the chunk's: envelope parts, event id base, history size and ttls, fresh epoch
    parts: EnvelopeParts
    event_id_base: str
    event_type: str

    def script_call(self) -> tuple[list[str], list[Any]]:
        keys: list[str] = []
        recipients: list[Any] = []
        for uid, position, channel in zip(self.uids, self.positions, self.channels):
            keys += [seq_key(channel), history_key(channel)]
            recipients += [uid_json(uid), position]
        return keys, [*self.shared_args, *recipients]

    def publish_now(self) -> list[int]:
        """Append, then announce these recipients alone (the retry queue's path after their slot failed)."""
        seqs = _assigned_seqs(_APPEND_MANY(*self.script_call()))
        count_published(self.event_type, len(seqs))
        _announce(self.parts, self.event_id_base, list(zip(self.positions, self.uids, seqs)), whole_chunk=False,
                  event_type=self.event_type)
        return seqs

    def describe(self) -> dict[str, Any]:
        return {"fanout_recipients": len(self.uids), "event_id_base": self.event_id_base, "slot_group": True}


@dataclass(frozen=True)
class _PendingMessage:
    """A batched fan-out message whose recipients are in their histories already but whose PUBLISH failed."""

    message: str

    def publish_now(self) -> None:
        get_redis().publish(settings.LISTENERS_FANOUT_CHANNEL, self.message)

    def describe(self) -> dict[str, Any]:
        return {"fanout_message": True}


def _announce(parts: EnvelopeParts, event_id_base: str, appended: list[tuple[int, str, int]], *,
              whole_chunk: bool, event_type: str) -> None:
    """PUBLISH one batched message for recipients already appended: (position, uid, seq), in position order. The
    positions are implicit when the message covers the whole chunk, as the single-slot script's message does."""
    appended = sorted(appended)
    for _, uid, seq in appended:
        log_published(user_channel(uid), event_type, seq)
    uids = [uid for _, uid, _ in appended]
    positions = None if whole_chunk else [position for position, _, _ in appended]
    message = (fanout.message_prefix(parts, event_id_base, uids, positions)
               + ",".join(str(seq) for _, _, seq in appended) + "]}")
    try:
        get_redis().publish(settings.LISTENERS_FANOUT_CHANNEL, message)
    except (redis.RedisError, OSError):
        EVENT_PUBLISH_FAILURES.labels("publish").inc()
        log.warning("event_fanout_message_failed_queued", fanout_recipients=len(uids), event_id_base=event_id_base)
        retry_queue.put(_PendingMessage(message))


def _publish_by_slot(chunk: _PendingFanout, groups: list[_SlotGroup]) -> list[int | None]:
    """Cluster fan-out of one chunk: an append script per slot, streamed per node, then one batched PUBLISH. A slot
    whose script did not run or whose reply was lost (MOVED, ASK, NOSCRIPT, a connection error) runs again in redis-py's
    cluster pipeline, which follows redirections; a slot that still failed, or whose script failed, is queued on its own
    (its recipients get None); the others are announced at once."""
    replies = _append_streamed(groups)
    again = [index for index, reply in enumerate(replies) if isinstance(reply, _RUN_AGAIN)]
    if again:
        try:
            rerun = _APPEND_MANY.run_many([groups[index].script_call() for index in again], raise_on_error=False)
        except (redis.RedisError, OSError) as exc:
            rerun = [exc] * len(again)
        for index, reply in zip(again, rerun):
            replies[index] = reply
    seqs: list[int | None] = [None] * len(chunk.uids)
    appended: list[tuple[int, str, int]] = []
    for group, reply in zip(groups, replies):
        if isinstance(reply, Exception):
            EVENT_PUBLISH_FAILURES.labels("publish").inc()
            log.warning("event_fanout_failed_queued", **group.describe())
            retry_queue.put(group)
            continue
        for position, uid, seq in zip(group.positions, group.uids, _assigned_seqs(reply)):
            seqs[position] = seq
            appended.append((position, uid, seq))
    if appended:
        count_published(chunk.event_type, len(appended))
        _announce(chunk.parts, chunk.event_id_base, appended, whole_chunk=len(appended) == len(chunk.uids),
                  event_type=chunk.event_type)
    return seqs


# A slot group's streamed reply that means its script did not run (a redirection, a node without the script) or that
# its reply is unknown (the script may have run: the marker makes the second run return the same seqs). AskError covers
# MovedError, its subclass in redis-py.
_RUN_AGAIN = (NoScriptError, AskError, TryAgainError, redis.ConnectionError, redis.TimeoutError, OSError)


def _append_streamed(groups: list[_SlotGroup]) -> list[Any]:
    """Cluster: every slot group's append script sent to the node that owns its slot (redis-py's slot map), each
    node's scripts packed in one write on one of its connections, then the replies read: per group its reply or the
    exception it met. redis-py's cluster pipeline sends the same commands, but its Python per command (packing,
    routing) was most of a fan-out's publish call: 10,000 recipients are about as many slot groups."""
    replies: list[Any] = [None] * len(groups)
    client = get_redis()
    by_node: dict[str, tuple[Any, list[int], list[bytes]]] = {}
    try:
        for index, group in enumerate(groups):
            keys, args = group.script_call()
            node = client.nodes_manager.get_node_from_slot(key_slot(keys[0].encode()))
            _, indices, commands = by_node.setdefault(node.name, (node, [], []))
            indices.append(index)
            commands.append(_resp("EVALSHA", _APPEND_MANY.sha, len(keys), *keys, *args))
    except RedisClusterException:  # a slot without an owner for a moment: the cluster pipeline's retries take over
        return [redis.ConnectionError("slot not covered")] * len(groups)
    sent: list[tuple[Any, Any, list[int]]] = []
    for node, indices, commands in by_node.values():
        pool = client.get_redis_connection(node).connection_pool
        try:
            connection = pool.get_connection()
        except (redis.RedisError, OSError) as exc:
            for index in indices:
                replies[index] = exc
            continue
        try:
            connection.send_packed_command([b"".join(commands)])
            sent.append((connection, pool, indices))
        except (redis.RedisError, OSError) as exc:
            connection.disconnect()
            pool.release(connection)
            for index in indices:
                replies[index] = exc
    for connection, pool, indices in sent:
        try:
            for index in indices:
                try:
                    replies[index] = connection.read_response()
                except redis.ResponseError as exc:  # an error reply: the connection is still in step
                    if isinstance(exc, MovedError):
                        client.nodes_manager.update_moved_exception(exc)  # redis-py moves the slot in its map
                    replies[index] = exc
        except (redis.RedisError, OSError) as exc:
            connection.disconnect()  # replies may still be on their way: this connection is not reused as it is
            for index in indices:
                if replies[index] is None:
                    replies[index] = exc
        finally:
            pool.release(connection)
    return replies


def _assigned_seqs(reply: bytes) -> list[int]:
    """A fan-out script's reply, "7,3,…": one bulk string parses much faster than an array of integers."""
    return [int(seq) for seq in reply.split(b",")]


def _resp(*command: str | int) -> bytes:
    """A command in RESP, the bytes redis-py's packer sends, built in a third of its time: its per-argument checks
    were 18 of the 33 ms of Python a fan-out to 10,000 users cost the publisher (5 ms this way)."""
    encoded = [arg.encode() if isinstance(arg, str) else b"%d" % arg for arg in command]
    return b"*%d\r\n" % len(encoded) + b"".join([b"$%d\r\n%b\r\n" % (len(arg), arg) for arg in encoded])


def _publish_streamed(chunks: list[_PendingFanout]) -> list[list[int] | None]:
    """One Redis: every chunk's script on one connection, sent as soon as it is built, its reply read once
    _FANOUT_WINDOW are in flight (or at the end). The seqs of each chunk, or None for a chunk to queue: after a failed
    reply nothing more is sent; after a connection error every reply not read is unknown (the chunk may have run:
    its retry gets its seqs back)."""
    outcomes: list[list[int] | None] = [None] * len(chunks)
    if not chunks:
        return outcomes
    pool = get_redis().connection_pool
    try:
        connection = pool.get_connection()
    except (redis.RedisError, OSError):
        return outcomes
    sent = read = 0
    failed = False

    def read_reply() -> None:
        nonlocal read, failed
        try:
            outcomes[read] = _assigned_seqs(connection.read_response())
        except NoScriptError:  # the script did not run (a restarted Redis): this call loads it
            keys, args = chunks[read].script_call()
            outcomes[read] = _assigned_seqs(_FANOUT(keys, args))
        except redis.ResponseError:
            failed = True
        read += 1

    try:
        for chunk in chunks:
            if failed:
                break
            keys, args = chunk.script_call()
            connection.send_packed_command([_resp("EVALSHA", _FANOUT.sha, len(keys), *keys, *args)])
            sent += 1
            if sent - read >= _FANOUT_WINDOW:
                read_reply()
        while read < sent:
            read_reply()
    except (redis.RedisError, OSError):
        connection.disconnect()  # replies may still be on their way: this connection is not reused as it is
    finally:
        pool.release(connection)
    return outcomes


def publish_to_many(uids: Iterable[str], event_type: str, payload: dict[str, Any]) -> list[PublishResult]:
    """Fan-out (e.g. a company-wide notification) of one ``user:*`` event: a Redis message per FANOUT_CHUNK users.

    Each recipient gets its own seq and history entry (so ``since`` recovers it like any event), in one Lua call per
    FANOUT_CHUNK recipients; the call PUBLISHes a single batched message on LISTENERS_FANOUT_CHANNEL, and every
    gateway process hands each local recipient's socket its envelope (realtime/fanout.py). Returns one result per
    distinct recipient, in order. A chunk that fails is queued, and every chunk after it that was not published.
    """
    if event_type.startswith(CHAT_PREFIX):
        raise ValueError("chat.* events belong to one thread's channel; publish them with publish_event")
    recipients = list(dict.fromkeys(uids))
    if not all(isinstance(uid, str) and uid for uid in recipients):
        raise ValueError("every recipient must be a non-empty uid")
    parts = EnvelopeParts.build(event_type, payload)
    chunks = [
        _PendingFanout(recipients[start:start + FANOUT_CHUNK], parts, uuid.uuid4().hex[:24], event_type)
        for start in range(0, len(recipients), FANOUT_CHUNK)
    ]
    streamed = len(retry_queue) == 0 and not is_cluster()
    outcomes = _publish_streamed(chunks) if streamed else [None] * len(chunks)
    results: list[PublishResult] = []
    for chunk, seqs in zip(chunks, outcomes):
        if seqs is not None:
            results += chunk.results(chunk.published(seqs))
            continue
        groups = chunk.slot_groups()
        if len(retry_queue) == 0 and len(groups) > 1:
            results += chunk.results(_publish_by_slot(chunk, groups))
            continue
        failing = len(retry_queue) == 0  # the first chunk the stream could not publish, or a cluster's one-slot chunk
        if failing and not streamed:
            try:
                results += chunk.results(chunk.publish_now())
                continue
            except (redis.RedisError, OSError):
                pass
        if failing:
            EVENT_PUBLISH_FAILURES.labels("publish").inc()
            log.warning("event_fanout_failed_queued", **chunk.describe())
        for queued in (groups if len(groups) > 1 else [chunk]):  # on a cluster, a script may not span slots
            retry_queue.put(queued)
        results += chunk.results(None)
    if provenance.collecting():  # inside an RPC call only: a listener's fan-out skips the loop
        for result in results:
            if result.seq is not None:
                provenance.note_published(result.channel, result.seq)
    return results
