"""Per-minute activity counters shared by every process: events published, RPC calls and RPC errors.

Prometheus counters are per process, and the dashboard must show the whole gateway (several ASGI processes plus the
listeners worker), so the counts also go to Redis in 10-second buckets (hash ``activity:{bucket}``, kept 5 minutes).
Hot paths only bump an in-process tally; a daemon thread flushes it once a second in one pipelined round trip, so
recording costs no Redis call on the request path. A process that dies loses at most its last second of counts.
"""
from __future__ import annotations

import threading
import time
from collections import Counter

import redis
import structlog

from core.integrations.redis import get_redis

log = structlog.get_logger(__name__)

BUCKET_S = 10
_BUCKETS_PER_MINUTE = 60 // BUCKET_S
_KEY = "activity:{bucket}"
_KEEP_S = 300
_FLUSH_INTERVAL_S = 1.0

EVENTS = "events"
RPC_CALLS = "rpc_calls"
RPC_ERRORS = "rpc_errors"


class _Tally:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._flusher: threading.Thread | None = None

    def add(self, field: str, amount: int) -> None:
        with self._lock:
            self._counts[field] += amount
            if self._flusher is None or not self._flusher.is_alive():
                self._flusher = threading.Thread(target=self._flush_forever, name="activity-flush", daemon=True)
                self._flusher.start()

    def take(self) -> Counter[str]:
        with self._lock:
            counts, self._counts = self._counts, Counter()
        return counts

    def put_back(self, counts: Counter[str]) -> None:
        with self._lock:
            self._counts.update(counts)

    def _flush_forever(self) -> None:
        while True:
            time.sleep(_FLUSH_INTERVAL_S)
            flush()


_tally = _Tally()


def flush() -> None:
    """Write the tally to the current bucket; on a Redis error keep it for the next flush."""
    counts = _tally.take()
    if not counts:
        return
    key = _KEY.format(bucket=int(time.time()) // BUCKET_S)
    try:
        pipe = get_redis().pipeline(transaction=False)
        for field, amount in counts.items():
            pipe.hincrby(key, field, amount)
        pipe.expire(key, _KEEP_S)
        pipe.execute()
    except (redis.RedisError, OSError):
        _tally.put_back(counts)
        log.warning("activity_flush_failed", pending=sum(counts.values()))


def record_events_published(count: int = 1) -> None:
    _tally.add(EVENTS, count)


def record_rpc_call(*, code: str) -> None:
    """One finished RPC call; any code other than ``OK``/``REPLAYED`` also counts as an error."""
    _tally.add(RPC_CALLS, 1)
    if code not in ("OK", "REPLAYED"):
        _tally.add(RPC_ERRORS, 1)


def last_minute(*, now: float | None = None) -> dict[str, int]:
    """Counts over the last six complete 10-second buckets (the minute that ended at the last bucket boundary)."""
    current = int(now if now is not None else time.time()) // BUCKET_S
    pipe = get_redis().pipeline(transaction=False)
    for bucket in range(current - _BUCKETS_PER_MINUTE, current):
        pipe.hgetall(_KEY.format(bucket=bucket))
    totals = {EVENTS: 0, RPC_CALLS: 0, RPC_ERRORS: 0}
    for bucket in pipe.execute():
        for field, amount in bucket.items():
            name = field.decode()
            if name in totals:
                totals[name] += int(amount)
    return totals
