"""Where an event came from, told two ways.

* To the caller: an RPC call collects the ``(channel, seq)`` of every event it publishes (``collect_published_events``
  sets a list in a contextvar; the publisher appends to it, fan-out and the async publisher included), and the response
  carries them as ``"events"``, so a client can wait on its socket for the seq of its own write.
* To staff: a short record per trace id (``record``), written when an RPC call or a listener publishes, read by the
  console's trace page from an event's ``trace_id``: the method, API client, duration and outcome of the call, or the
  worker and kind of the listener.

Records are bounded (at most ``EVENTS_KEPT`` events each, one key per trace id, for ``CONSOLE_TRACE_TTL``, by default the history's TTL:
an event older than its channel's history is out of the event viewer anyway) and written off the hot path: ``record`` only
appends to an in-process buffer, flushed once a second in one pipelined round trip by a daemon thread (core/periodic_flush.py,
as for core/activity.py's counters). A process that dies loses at most its last second of records.
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from contextvars import ContextVar
from typing import Any

import redis
import structlog
from django.conf import settings

from core.integrations.redis import get_redis
from core.keys import trace_key
from core.periodic_flush import PeriodicFlusher

log = structlog.get_logger(__name__)

# A response names at most this many events (a fan-out to a whole company would otherwise make it megabytes); the
# first ones published, which for a write are its own user's.
MAX_EVENTS_IN_RESPONSE = 100
EVENTS_KEPT = 20  # per trace record
_BUFFER_MAX = 10_000  # records waiting for the flush; beyond, the oldest are dropped (counted in the log)
_FLUSH_INTERVAL_S = 1.0

_published: ContextVar[list[tuple[str, int]] | None] = ContextVar("published_events", default=None)


def collect_published_events() -> list[tuple[str, int]]:
    """Start collecting, in the current context, the events published from now on (and in the tasks and worker
    threads it is copied into: they share this list)."""
    events: list[tuple[str, int]] = []
    _published.set(events)
    return events


def collecting() -> bool:
    return _published.get() is not None


def note_published(channel: str, seq: int) -> None:
    """Called by the publisher for each event with its seq (queued events have none yet and are not named)."""
    events = _published.get()
    if events is not None and len(events) < MAX_EVENTS_IN_RESPONSE:
        events.append((channel, seq))


def events_json(events: list[tuple[str, int]]) -> list[dict[str, Any]]:
    return [{"channel": channel, "seq": seq} for channel, seq in events]


def ttl_s() -> int:
    return int(settings.CONSOLE_TRACE_TTL)


class _Buffer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: deque[tuple[str, str]] = deque()
        self.dropped = 0

    def add(self, trace_id: str, value: str) -> None:
        with self._lock:
            if len(self._records) >= _BUFFER_MAX:
                self._records.popleft()
                self.dropped += 1
            self._records.append((trace_id, value))
        _flusher.ensure_running()

    def take(self) -> list[tuple[str, str]]:
        with self._lock:
            records = list(self._records)
            self._records.clear()
        return records

    def put_back(self, records: list[tuple[str, str]]) -> None:
        with self._lock:
            self._records.extendleft(reversed(records[-_BUFFER_MAX:]))
            while len(self._records) > _BUFFER_MAX:
                self._records.popleft()


_buffer = _Buffer()


def record(trace_id: str, *, origin: str, events: list[tuple[str, int | None]], **fields: Any) -> None:
    """Remember where the events of ``trace_id`` came from: ``origin`` "rpc" (method, client, code, duration_ms) or
    "listener" (worker, kind, uid, type). A later record of the same trace replaces it (a call that settles after its
    TIMEOUT tells its real outcome). A seq is None while its event waits in the publisher's retry queue."""
    if not trace_id or not events:
        return
    value = {"origin": origin, "trace_id": trace_id, "at": time.time(), **fields,
             "events": [[channel, seq] for channel, seq in events[:EVENTS_KEPT]], "event_count": len(events)}
    _buffer.add(trace_id, json.dumps(value, separators=(",", ":")))


def _write() -> None:
    records = _buffer.take()
    if not records:
        return
    ttl = ttl_s()
    try:
        pipe = get_redis().pipeline(transaction=False)
        for trace_id, value in records:
            pipe.set(trace_key(trace_id), value, ex=ttl)
        pipe.execute()
    except (redis.RedisError, OSError):
        _buffer.put_back(records)
        log.warning("provenance_flush_failed", pending=len(records))
    if _buffer.dropped:
        log.warning("provenance_records_dropped", dropped=_buffer.dropped)
        _buffer.dropped = 0


_flusher = PeriodicFlusher("provenance", _write, _FLUSH_INTERVAL_S)


def flush() -> None:
    """Write the buffered records; on a Redis error keep them for the next flush."""
    _flusher.flush()


def read(trace_id: str) -> dict[str, Any] | None:
    """The record of ``trace_id``, or None (never written, or expired)."""
    raw = get_redis().get(trace_key(trace_id))
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None
