"""What single events (realtime/publisher.py) and fan-outs (realtime/fanout_publisher.py) share: the Lua function that
appends one envelope to a channel, the result type, metrics and the ordered retry queue.

A publish that fails is queued in order and retried by a background thread; it is counted and logged, never silently
dropped. While anything is queued, new events queue behind it so per-channel order holds.
"""
from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass
from typing import Any, Protocol

import redis
import structlog

from core import activity
from core.metrics import EVENT_PUBLISH_FAILURES, EVENTS_PUBLISHED, EVENTS_QUEUED

log = structlog.get_logger("realtime.publisher")  # one logger name for every publish line (tests and dashboards)

# Appends one envelope to a channel: HINCRBY its seq (keeping its epoch), XADD to its exact-MAXLEN history with a TTL.
APPEND_LUA = """
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

MAX_QUEUED = 100_000


@dataclass(frozen=True)
class PublishResult:
    channel: str
    event_id: str
    seq: int | None  # None while the event waits in the retry queue
    queued: bool = False


class Publishable(Protocol):
    def publish_now(self) -> Any: ...

    def describe(self) -> dict[str, Any]: ...


def count_published(event_type: str, events: int) -> None:
    EVENTS_PUBLISHED.labels(event_type).inc(events)
    activity.record_events_published(events)


def log_published(channel: str, event_type: str, seq: int) -> None:
    """The original service's ``publish`` line, at DEBUG: one per event on the hot path, so checked before built."""
    if log.isEnabledFor(logging.DEBUG):
        log.debug("publish", channel=channel, type=event_type, seq=seq)


class RetryQueue:
    """Ordered queue of publishes that failed, drained by one background thread with backoff."""

    def __init__(self) -> None:
        self._items: collections.deque[Publishable] = collections.deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, pending: Publishable) -> None:
        with self._cond:
            if len(self._items) >= MAX_QUEUED:
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
            except Exception as exc:  # noqa: BLE001 - this thread must outlive any failure, or the queue stops for good
                # Besides Redis errors: redis-py's cluster client can raise AttributeError when a restarted node's
                # connections are torn down under a read (seen on the cluster pass of the Redis-outage test).
                EVENT_PUBLISH_FAILURES.labels("retry").inc()
                if not isinstance(exc, (redis.RedisError, OSError)):
                    log.warning("event_retry_unexpected_error", error=type(exc).__name__, **pending.describe())
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


retry_queue = RetryQueue()


def wait_for_retry_queue(timeout: float = 10.0) -> bool:
    """True once every queued event has been published (tests and graceful shutdown)."""
    return retry_queue.wait_empty(timeout)
