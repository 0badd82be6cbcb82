"""The one event publisher every producer uses (RPC methods, listeners, long jobs).

One Lua call per event does everything in a single Redis round trip: INCR the channel's ``seq``, append the envelope
to the channel's bounded history stream, and PUBLISH it on the channel. The Reflex bus consumer and this service's
WebSocket dispatchers are both subscribers of that channel, so one PUBLISH serves both.

Fan-out (``publish_to_many``) gives every recipient its own seq and history entry but PUBLISHes one batched message
for all of them (``realtime/fanout.py``), which every gateway process delivers to its local sockets.

Redis Cluster: a channel's seq and history share its ``{channel}`` tag (realtime/channels.py), so a single event is one
single-slot script as on one Redis. A fan-out's recipients are grouped by slot: one group (always, on a single Redis)
is one script that also PUBLISHes; several groups are one append script per slot, pipelined (one round trip per
node), then one PUBLISH of the batched message. The channels stay classic PUBLISH, which a cluster broadcasts to every
node, so the Reflex bus consumer's plain SUBSCRIBE on any node keeps working.

Callable from sync code on any thread (one shared client, no connection per event) and from async code (the loop's
own client, never blocking). A publish that fails is queued in order and retried by a background thread; it is counted
and logged, never silently dropped. While anything is queued, new events queue behind it so per-channel order holds.
"""
from __future__ import annotations

import collections
import functools
import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Iterable, Protocol

import redis
import structlog
from django.conf import settings

from core import activity, provenance
from core.integrations.redis import get_async_redis, get_redis
from core.integrations.redis_scripts import LuaScript, group_by_slot
from core.metrics import EVENT_PUBLISH_FAILURES, EVENTS_PUBLISHED, EVENTS_QUEUED

from . import fanout
from .channels import (FANOUT_MARKER_TTL_S, SEQ_TTL_S, channel_for_event, fanout_marker_key, history_key, namespace_of,
                       seq_key, user_channel)
from .events import CHAT_PREFIX
from .envelope import EnvelopeParts, fanout_event_id, uid_json

log = structlog.get_logger(__name__)

# Appends one envelope to a channel: HINCRBY its seq (keeping its epoch), XADD to its exact-MAXLEN history with a TTL.
_APPEND_LUA = """
local function append(seq_key, hist_key, msg_head, size, hist_ttl, seq_ttl, epoch)
  local seq = redis.call('HINCRBY', seq_key, 'n', 1)
  if seq == 1 then redis.call('HSETNX', seq_key, 'epoch', epoch) end
  redis.call('EXPIRE', seq_key, seq_ttl)
  local msg = msg_head .. seq .. '}'
  local ok = redis.pcall('XADD', hist_key, 'MAXLEN', size, seq .. '-0', 'm', msg)
  if type(ok) == 'table' and ok.err then
    -- The stream outlived its seq counter (e.g. evicted): history restarts, recovery before this point fails cleanly.
    redis.call('DEL', hist_key)
    redis.call('XADD', hist_key, 'MAXLEN', size, seq .. '-0', 'm', msg)
  end
  redis.call('EXPIRE', hist_key, hist_ttl)
  return seq, msg
end
"""
# KEYS: seq hash, history. ARGV: channel, envelope up to '"seq":', history size, history ttl s, seq ttl s, the event
# id (also the fresh epoch id, kept only if the channel has none: a restarted Redis starts a new one).
# The seq hash keeps the last event id ('last'): when a node dies after running the script but before its reply
# arrives, the retry queue publishes the same event again, first on its channel (the queue keeps order), and gets its
# seq back instead of appending it twice under a new one (a master restart made sockets receive an event twice).
_PUBLISH_LUA = _APPEND_LUA + """
if redis.call('HGET', KEYS[1], 'last') == ARGV[6] then return tonumber(redis.call('HGET', KEYS[1], 'n')) end
local seq, msg = append(KEYS[1], KEYS[2], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
redis.call('HSET', KEYS[1], 'last', ARGV[6])
redis.call('PUBLISH', ARGV[1], msg)
return seq
"""
# A fan-out chunk's script first looks for its marker (realtime/channels.py: the seqs it assigned, kept a few minutes):
# when a node dies after running it but before its reply arrives, the retry queue runs the chunk again and gets the
# same seqs back instead of appending the event to every recipient again under a new seq. The retry publishes nothing:
# the first run PUBLISHed in the same atomic script (subscribers that lost that node resync from history); on a
# cluster the caller announces the slot's recipients after the reply (a lost reply was never announced), and the
# gateway drops a seq it has already sent. The seqs come back as one string "7,3,…" (the message's own seq list).
_FANOUT_RETURN_IF_DONE = """
local done = redis.call('GET', KEYS[1])
if done then return done end
"""
# KEYS: the chunk's marker, then (seq hash, history) per recipient. ARGV: fan-out channel, fan-out message prefix,
# envelope head, middle, event id base, tail, history size, history ttl s, seq ttl s, fresh epoch, marker ttl s, then
# each recipient's JSON-encoded uid.
_FANOUT_LUA = _APPEND_LUA + _FANOUT_RETURN_IF_DONE + """
local seqs = {}
for i = 1, (#KEYS - 1) / 2 do
  local envelope = ARGV[3] .. ARGV[11 + i] .. ARGV[4] .. ARGV[5] .. string.format('%08x', i - 1) .. ARGV[6]
  seqs[i] = append(KEYS[2 * i], KEYS[2 * i + 1], envelope, ARGV[7], ARGV[8], ARGV[9], ARGV[10])
end
local assigned = table.concat(seqs, ',')
redis.call('SET', KEYS[1], assigned, 'EX', ARGV[11])
redis.call('PUBLISH', ARGV[1], ARGV[2] .. assigned .. ']}')
return assigned
"""
# Cluster fan-out, one slot's recipients (no PUBLISH: the caller sends one message for all slots).
# KEYS: the slot group's marker, then (seq hash, history) per recipient. ARGV: envelope head, middle, event id base,
# tail, history size, history ttl s, seq ttl s, fresh epoch, marker ttl s, then per recipient its JSON-encoded uid and
# its position in the fan-out chunk.
_APPEND_MANY = LuaScript(_APPEND_LUA + _FANOUT_RETURN_IF_DONE + """
local seqs = {}
for i = 1, (#KEYS - 1) / 2 do
  local position = string.format('%08x', tonumber(ARGV[9 + 2 * i]))
  local envelope = ARGV[1] .. ARGV[8 + 2 * i] .. ARGV[2] .. ARGV[3] .. position .. ARGV[4]
  seqs[i] = append(KEYS[2 * i], KEYS[2 * i + 1], envelope, ARGV[5], ARGV[6], ARGV[7], ARGV[8])
end
local assigned = table.concat(seqs, ',')
redis.call('SET', KEYS[1], assigned, 'EX', ARGV[9])
return assigned
""")

_MAX_QUEUED = 100_000
# Recipients per fan-out Lua call (and per batched message): bounds how long one script holds Redis, and how soon the
# gateways start writing a fan-out's frames: they deliver one chunk while Valkey runs the next. 250 rather than 1,000:
# a fan-out to 1,000 users 29 -> 25 ms to its last frame, to 10,000 unchanged (README "Benchmarks", fan-out).
FANOUT_CHUNK = 250


@dataclass(frozen=True)
class PublishResult:
    channel: str
    event_id: str
    seq: int | None  # None while the event waits in the retry queue
    queued: bool = False


class _Publishable(Protocol):
    def publish_now(self) -> Any: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class _Pending:
    """One event for one channel."""

    channel: str
    envelope_without_seq: str
    event_id: str
    event_type: str

    def script_call(self) -> tuple[list[str], list[Any]]:
        namespace = namespace_of(self.channel)
        keys = [seq_key(self.channel), history_key(self.channel)]
        # The event id doubles as the epoch id a channel gets if it has none (it is fresh and unique).
        args = [self.channel, self.envelope_without_seq, namespace.history_size, namespace.history_ttl_s, SEQ_TTL_S,
                self.event_id]
        return keys, args

    def publish_now(self) -> int:
        keys, args = self.script_call()
        seq = int(_script("publish")(keys=keys, args=args))
        _count(self.event_type, 1)
        _log_published(self.channel, self.event_type, seq)
        return seq

    def describe(self) -> dict[str, Any]:
        return {"channel": self.channel, "event_id": self.event_id}


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
        keys = [fanout_marker_key(self.channels[0], self.event_id_base)]
        for channel in self.channels:
            keys += [seq_key(channel), history_key(channel)]
        namespace = namespace_of(self.channels[0])
        args = [
            settings.LISTENERS_FANOUT_CHANNEL, fanout.message_prefix(self.parts, self.event_id_base, self.uids),
            self.parts.head, self.parts.middle, self.event_id_base, self.parts.tail,
            namespace.history_size, namespace.history_ttl_s, SEQ_TTL_S, uuid.uuid4().hex, FANOUT_MARKER_TTL_S,
            *(uid_json(uid) for uid in self.uids),
        ]
        return keys, args

    def publish_now(self) -> list[int]:
        keys, args = self.script_call()
        seqs = _assigned_seqs(_script("fanout")(keys=keys, args=args))
        _count(self.event_type, len(self.uids))
        if log.isEnabledFor(logging.DEBUG):
            for channel, seq in zip(self.channels, seqs):
                _log_published(channel, self.event_type, seq)
        return seqs

    def results(self, seqs: list[int | None] | None) -> list[PublishResult]:
        seqs = seqs if seqs is not None else [None] * len(self.uids)
        return [
            PublishResult(channel, fanout_event_id(self.event_id_base, index), seqs[index], queued=seqs[index] is None)
            for index, channel in enumerate(self.channels)
        ]

    def slot_groups(self) -> list[_SlotGroup]:
        """The recipients by the slot of their channel keys: one group on a single Redis."""
        groups = group_by_slot(enumerate(self.uids), lambda item: seq_key(user_channel(item[1])))
        return [_SlotGroup([uid for _, uid in group], [index for index, _ in group], self.parts, self.event_id_base,
                           self.event_type) for group in groups]

    def describe(self) -> dict[str, Any]:
        return {"fanout_recipients": len(self.uids), "event_id_base": self.event_id_base}


@dataclass(frozen=True)
class _SlotGroup:
    """Cluster fan-out: the recipients of one chunk whose channel keys share a slot, with their positions in it."""

    uids: list[str]
    positions: list[int]
    parts: EnvelopeParts
    event_id_base: str
    event_type: str

    def script_call(self) -> tuple[list[str], list[Any]]:
        keys = [fanout_marker_key(user_channel(self.uids[0]), self.event_id_base)]
        recipients: list[Any] = []
        for uid, position in zip(self.uids, self.positions):
            channel = user_channel(uid)
            keys += [seq_key(channel), history_key(channel)]
            recipients += [uid_json(uid), position]
        namespace = namespace_of(user_channel(self.uids[0]))
        args = [self.parts.head, self.parts.middle, self.event_id_base, self.parts.tail, namespace.history_size,
                namespace.history_ttl_s, SEQ_TTL_S, uuid.uuid4().hex, FANOUT_MARKER_TTL_S, *recipients]
        return keys, args

    def publish_now(self) -> list[int]:
        """Append, then announce these recipients alone (the retry queue's path after their slot failed)."""
        seqs = _assigned_seqs(_APPEND_MANY(*self.script_call()))
        _count(self.event_type, len(seqs))
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
        _log_published(user_channel(uid), event_type, seq)
    uids = [uid for _, uid, _ in appended]
    positions = None if whole_chunk else [position for position, _, _ in appended]
    message = (fanout.message_prefix(parts, event_id_base, uids, positions)
               + ",".join(str(seq) for _, _, seq in appended) + "]}")
    try:
        get_redis().publish(settings.LISTENERS_FANOUT_CHANNEL, message)
    except (redis.RedisError, OSError):
        EVENT_PUBLISH_FAILURES.labels("publish").inc()
        log.warning("event_fanout_message_failed_queued", fanout_recipients=len(uids), event_id_base=event_id_base)
        _retry_queue.put(_PendingMessage(message))


def _publish_by_slot(chunk: _PendingFanout, groups: list[_SlotGroup]) -> list[int | None]:
    """Cluster fan-out of one chunk: an append script per slot in one pipeline, then one batched PUBLISH. A slot that
    failed is queued on its own (its recipients get None); the others are announced at once."""
    try:
        replies = _APPEND_MANY.run_many([group.script_call() for group in groups], raise_on_error=False)
    except (redis.RedisError, OSError) as exc:
        replies = [exc] * len(groups)
    seqs: list[int | None] = [None] * len(chunk.uids)
    appended: list[tuple[int, str, int]] = []
    for group, reply in zip(groups, replies):
        if isinstance(reply, Exception):
            EVENT_PUBLISH_FAILURES.labels("publish").inc()
            log.warning("event_fanout_failed_queued", **group.describe())
            _retry_queue.put(group)
            continue
        for position, uid, seq in zip(group.positions, group.uids, _assigned_seqs(reply)):
            seqs[position] = seq
            appended.append((position, uid, seq))
    if appended:
        _count(chunk.event_type, len(appended))
        _announce(chunk.parts, chunk.event_id_base, appended, whole_chunk=len(appended) == len(chunk.uids),
                  event_type=chunk.event_type)
    return seqs


def _assigned_seqs(reply: bytes) -> list[int]:
    """A fan-out script's reply, "7,3,…": one bulk string parses much faster than an array of integers."""
    return [int(seq) for seq in reply.split(b",")]


def _count(event_type: str, events: int) -> None:
    EVENTS_PUBLISHED.labels(event_type).inc(events)
    activity.record_events_published(events)


def _log_published(channel: str, event_type: str, seq: int) -> None:
    """The original service's ``publish`` line, at DEBUG: one per event on the hot path, so checked before built."""
    if log.isEnabledFor(logging.DEBUG):
        log.debug("publish", channel=channel, type=event_type, seq=seq)


def _prepare(uid: str, event_type: str, payload: dict[str, Any], job_id: str | None) -> _Pending:
    if not uid or not event_type:
        raise ValueError("uid and event_type are required")
    channel = channel_for_event(uid, event_type, payload)
    event_id = uuid.uuid4().hex
    envelope = EnvelopeParts.build(event_type, payload, job_id).without_seq(uid, event_id)
    return _Pending(channel, envelope, event_id, event_type)


class _RetryQueue:
    """Ordered queue of publishes that failed, drained by one background thread with backoff."""

    def __init__(self) -> None:
        self._items: collections.deque[_Publishable] = collections.deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, pending: _Publishable) -> None:
        with self._cond:
            if len(self._items) >= _MAX_QUEUED:
                dropped = self._items.popleft()
                EVENT_PUBLISH_FAILURES.labels("queue_overflow").inc()
                log.error("event_dropped_queue_full", **dropped.describe())
            self._items.append(pending)
            EVENTS_QUEUED.set(len(self._items))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._drain, name="event-retry", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _drain(self) -> None:
        delay = 0.05
        while True:
            with self._cond:
                if not self._items:
                    return
                pending = self._items[0]
            try:
                pending.publish_now()
            except (redis.RedisError, OSError):
                EVENT_PUBLISH_FAILURES.labels("retry").inc()
                with self._cond:
                    self._cond.wait(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.05
            with self._cond:
                self._items.popleft()
                EVENTS_QUEUED.set(len(self._items))
            log.info("event_published_after_retry", **pending.describe())

    def wait_empty(self, timeout: float) -> bool:
        import time

        deadline = time.monotonic() + timeout
        while len(self._items) and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._items


_retry_queue = _RetryQueue()
_script_lock = threading.Lock()
_sync_scripts: dict[str, Any] = {}
_SCRIPTS = {"publish": _PUBLISH_LUA, "fanout": _FANOUT_LUA}


def _script(name: str) -> Any:
    """The registered script on the process's shared client (EVALSHA, reloaded by redis-py after a Redis restart)."""
    script = _sync_scripts.get(name)
    if script is None:
        with _script_lock:
            script = _sync_scripts.get(name)
            if script is None:
                script = _sync_scripts[name] = get_redis().register_script(_SCRIPTS[name])
    return script


def publish_event(uid: str, event_type: str, payload: dict[str, Any], *, job_id: str | None = None) -> PublishResult:
    """Publish one event (sync, any thread). Returns its seq, or ``queued=True`` if Redis is unreachable right now."""
    pending = _prepare(uid, event_type, payload, job_id)
    if len(_retry_queue) == 0:
        try:
            seq = pending.publish_now()
            provenance.note_published(pending.channel, seq)  # the RPC call's response names it (core/provenance.py)
            return PublishResult(pending.channel, pending.event_id, seq)
        except (redis.RedisError, OSError):
            EVENT_PUBLISH_FAILURES.labels("publish").inc()
            log.warning("event_publish_failed_queued", **pending.describe())
    _retry_queue.put(pending)
    return PublishResult(pending.channel, pending.event_id, None, queued=True)


async def apublish_event(
    uid: str, event_type: str, payload: dict[str, Any], *, job_id: str | None = None
) -> PublishResult:
    """The same from async code, on the running loop's client."""
    pending = _prepare(uid, event_type, payload, job_id)
    if len(_retry_queue) == 0:
        keys, args = pending.script_call()
        try:
            seq = int(await get_async_redis().eval(_PUBLISH_LUA, len(keys), *keys, *args))
            _count(pending.event_type, 1)
            _log_published(pending.channel, pending.event_type, seq)
            provenance.note_published(pending.channel, seq)
            return PublishResult(pending.channel, pending.event_id, seq)
        except (redis.RedisError, OSError):
            EVENT_PUBLISH_FAILURES.labels("publish").inc()
            log.warning("event_publish_failed_queued", **pending.describe())
    _retry_queue.put(pending)
    return PublishResult(pending.channel, pending.event_id, None, queued=True)


def publish_to_many(uids: Iterable[str], event_type: str, payload: dict[str, Any]) -> list[PublishResult]:
    """Fan-out (e.g. a company-wide notification) of one ``user:*`` event: a Redis message per FANOUT_CHUNK users.

    Each recipient gets its own seq and history entry (so ``since`` recovers it like any event), in one Lua call per
    FANOUT_CHUNK recipients; the call PUBLISHes a single batched message on LISTENERS_FANOUT_CHANNEL, and every
    gateway process hands each local recipient's socket its envelope (realtime/fanout.py). Returns one result per
    distinct recipient, in order. A chunk that fails is queued (and everything after it, to keep order).
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
    results: list[PublishResult] = []
    for chunk in chunks:
        groups = chunk.slot_groups()
        if len(_retry_queue) == 0 and len(groups) > 1:
            results += chunk.results(_publish_by_slot(chunk, groups))
            continue
        if len(_retry_queue) == 0:
            try:
                results += chunk.results(chunk.publish_now())
                continue
            except (redis.RedisError, OSError):
                EVENT_PUBLISH_FAILURES.labels("publish").inc()
                log.warning("event_fanout_failed_queued", **chunk.describe())
        for queued in (groups if len(groups) > 1 else [chunk]):  # on a cluster, a script may not span slots
            _retry_queue.put(queued)
        results += chunk.results(None)
    if provenance.collecting():  # inside an RPC call only: a listener's fan-out skips the loop
        for result in results:
            if result.seq is not None:
                provenance.note_published(result.channel, result.seq)
    return results


def wait_for_retry_queue(timeout: float = 10.0) -> bool:
    """True once every queued event has been published (tests and graceful shutdown)."""
    return _retry_queue.wait_empty(timeout)
