"""The one event publisher every producer uses (RPC methods, listeners, long jobs).

One Lua call per event does everything in a single Redis round trip: INCR the channel's ``seq``, append the envelope
to the channel's bounded history stream, and PUBLISH it on the channel. The Reflex bus consumer and this service's
WebSocket dispatchers are both subscribers of that channel, so one PUBLISH serves both.

Callable from sync code on any thread (one shared client, no connection per event) and from async code (the loop's
own client, never blocking). A publish that fails is queued in order and retried by a background thread; it is counted
and logged, never silently dropped. While anything is queued, new events queue behind it so per-channel order holds.
"""
from __future__ import annotations

import collections
import datetime as dt
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Iterable

import redis
import structlog

from listeners_project import activity
from listeners_project.adapters.redis import get_async_redis, get_redis
from listeners_project.logging import current_trace_id
from listeners_project.metrics import EVENT_PUBLISH_FAILURES, EVENTS_PUBLISHED, EVENTS_QUEUED
from rpc.serialization import json_default

from .channels import channel_for_event, history_key, namespace_of, seq_key

log = structlog.get_logger(__name__)

# KEYS: counter hash {n, epoch}, history. ARGV: channel, envelope prefix (ends with '"seq":'), history size,
# history ttl s, counter ttl s, a fresh epoch id (kept only if the channel has none: a restarted Redis starts a new one).
_PUBLISH_LUA = """
local seq = redis.call('HINCRBY', KEYS[1], 'n', 1)
if seq == 1 then redis.call('HSETNX', KEYS[1], 'epoch', ARGV[6]) end
redis.call('EXPIRE', KEYS[1], ARGV[5])
local msg = ARGV[2] .. seq .. '}'
local ok = redis.pcall('XADD', KEYS[2], 'MAXLEN', ARGV[3], seq .. '-0', 'm', msg)
if type(ok) == 'table' and ok.err then
  -- The stream outlived its seq counter (e.g. evicted): history restarts, recovery before this point fails cleanly.
  redis.call('DEL', KEYS[2])
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], seq .. '-0', 'm', msg)
end
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[1], msg)
return seq
"""

# The seq counter must outlive the history so a reconnecting client never sees numbers reused.
_SEQ_TTL_S = 7 * 24 * 3600
_MAX_QUEUED = 100_000


@dataclass(frozen=True)
class PublishResult:
    channel: str
    event_id: str
    seq: int | None  # None while the event waits in the retry queue
    queued: bool = False


@dataclass(frozen=True)
class _Pending:
    channel: str
    prefix: bytes
    event_id: str
    event_type: str


def utc_now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _envelope_prefix(uid: str, event_type: str, payload: dict[str, Any], job_id: str | None, event_id: str) -> bytes:
    import json

    envelope: dict[str, Any] = {
        "type": event_type,
        "uid": uid,
        "timestamp": utc_now_iso(),
        "payload": payload,
        "event_id": event_id,
    }
    if job_id is not None:
        envelope["job_id"] = job_id
    trace_id = current_trace_id()
    if trace_id:
        envelope["trace_id"] = trace_id
    body = json.dumps(envelope, default=json_default, separators=(",", ":")).encode("ascii")
    return body[:-1] + b',"seq":'


def _prepare(uid: str, event_type: str, payload: dict[str, Any], job_id: str | None) -> _Pending:
    if not uid or not event_type:
        raise ValueError("uid and event_type are required")
    channel = channel_for_event(uid, event_type, payload)
    event_id = uuid.uuid4().hex
    return _Pending(channel, _envelope_prefix(uid, event_type, payload, job_id, event_id), event_id, event_type)


def _script_args(pending: _Pending) -> tuple[list[str], list[Any]]:
    namespace = namespace_of(pending.channel)
    keys = [seq_key(pending.channel), history_key(pending.channel)]
    args = [pending.channel, pending.prefix, namespace.history_size, namespace.history_ttl_s, _SEQ_TTL_S, pending.event_id]
    return keys, args


class _RetryQueue:
    """Ordered queue of events whose publish failed, drained by one background thread with backoff."""

    def __init__(self) -> None:
        self._items: collections.deque[_Pending] = collections.deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, pending: _Pending) -> None:
        with self._cond:
            if len(self._items) >= _MAX_QUEUED:
                dropped = self._items.popleft()
                EVENT_PUBLISH_FAILURES.labels("queue_overflow").inc()
                log.error("event_dropped_queue_full", channel=dropped.channel, event_id=dropped.event_id)
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
                _publish_now(pending)
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
            log.info("event_published_after_retry", channel=pending.channel, event_id=pending.event_id)

    def wait_empty(self, timeout: float) -> bool:
        import time

        deadline = time.monotonic() + timeout
        while len(self._items) and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._items


_retry_queue = _RetryQueue()
_script_lock = threading.Lock()
_sync_script: Any = None


def _publish_script() -> Any:
    global _sync_script
    if _sync_script is None:
        with _script_lock:
            if _sync_script is None:
                _sync_script = get_redis().register_script(_PUBLISH_LUA)
    return _sync_script


def _publish_now(pending: _Pending) -> int:
    keys, args = _script_args(pending)
    seq = int(_publish_script()(keys=keys, args=args))
    EVENTS_PUBLISHED.labels(pending.event_type).inc()
    activity.record_events_published()
    return seq


def publish_event(uid: str, event_type: str, payload: dict[str, Any], *, job_id: str | None = None) -> PublishResult:
    """Publish one event (sync, any thread). Returns its seq, or ``queued=True`` if Redis is unreachable right now."""
    pending = _prepare(uid, event_type, payload, job_id)
    if len(_retry_queue) == 0:
        try:
            return PublishResult(pending.channel, pending.event_id, _publish_now(pending))
        except (redis.RedisError, OSError):
            EVENT_PUBLISH_FAILURES.labels("publish").inc()
            log.warning("event_publish_failed_queued", channel=pending.channel, event_id=pending.event_id)
    _retry_queue.put(pending)
    return PublishResult(pending.channel, pending.event_id, None, queued=True)


async def apublish_event(
    uid: str, event_type: str, payload: dict[str, Any], *, job_id: str | None = None
) -> PublishResult:
    """The same from async code, on the running loop's client."""
    pending = _prepare(uid, event_type, payload, job_id)
    if len(_retry_queue) == 0:
        keys, args = _script_args(pending)
        try:
            seq = int(await get_async_redis().eval(_PUBLISH_LUA, len(keys), *keys, *args))
            EVENTS_PUBLISHED.labels(pending.event_type).inc()
            activity.record_events_published()
            return PublishResult(pending.channel, pending.event_id, seq)
        except (redis.RedisError, OSError):
            EVENT_PUBLISH_FAILURES.labels("publish").inc()
            log.warning("event_publish_failed_queued", channel=pending.channel, event_id=pending.event_id)
    _retry_queue.put(pending)
    return PublishResult(pending.channel, pending.event_id, None, queued=True)


def publish_to_many(uids: Iterable[str], event_type: str, payload: dict[str, Any]) -> list[PublishResult]:
    """Fan-out (e.g. a company-wide notification): every recipient's event in ONE pipelined round trip.

    Each user keeps its own seq and history, and gets one PUBLISH on its own channel (that is what both the Reflex bus
    consumer and each WebSocket process subscribe to); the cost is a single network round trip, not one per user.
    """
    pendings = [_prepare(uid, event_type, payload, None) for uid in dict.fromkeys(uids)]
    if not pendings:
        return []
    if len(_retry_queue) == 0:
        script = _publish_script()
        pipe = get_redis().pipeline(transaction=False)
        for pending in pendings:
            keys, args = _script_args(pending)
            script(keys=keys, args=args, client=pipe)
        try:
            seqs = pipe.execute()
            EVENTS_PUBLISHED.labels(event_type).inc(len(pendings))
            activity.record_events_published(len(pendings))
            return [PublishResult(p.channel, p.event_id, int(s)) for p, s in zip(pendings, seqs)]
        except (redis.RedisError, OSError):
            EVENT_PUBLISH_FAILURES.labels("publish").inc()
            log.warning("event_fanout_failed_queued", recipients=len(pendings))
    for pending in pendings:
        _retry_queue.put(pending)
    return [PublishResult(p.channel, p.event_id, None, queued=True) for p in pendings]


def wait_for_retry_queue(timeout: float = 10.0) -> bool:
    """True once every queued event has been published (tests and graceful shutdown)."""
    return _retry_queue.wait_empty(timeout)
