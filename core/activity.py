"""Activity counters shared by every process: events published, RPC calls and errors, listener restarts, and samples
of sockets and users online, for the dashboard's numbers and charts.

Prometheus counters are per process, and the dashboard must show the whole gateway (several ASGI processes plus the
listeners worker), so the counts also go to Redis, bounded two ways:

* ``activity:{bucket}``: 10-second buckets (kept 5 minutes) of the three headline counts, for "per minute" numbers;
* ``activity:m:{minute}``: one hash per minute (kept ``KEEP_MINUTES`` + 5), the headline counts plus one field per
  (method, API client, code): bounded, since methods are the registered ones (or "unknown"), clients are the API
  client rows and codes are the typed errors' (core/errors.py);
* ``activity:g:{minute}``: gauge samples per minute: ``sockets:{process}`` (summed over processes when read) and
  ``users_online`` (the latest sample);
* ``activity:failures``: the latest ``FAILURES_KEPT`` failed calls (method, client, code, trace_id, duration).

Hot paths only bump an in-process tally; a daemon thread flushes it once a second in one pipelined round trip, so
recording costs no Redis call on the request path. A process that dies loses at most its last second of counts.
"""
from __future__ import annotations

import functools
import json
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import redis
import structlog

from core.integrations.redis import get_redis
from core.periodic_flush import PeriodicFlusher

log = structlog.get_logger(__name__)

BUCKET_S = 10
_BUCKETS_PER_MINUTE = 60 // BUCKET_S
_KEY = "activity:{bucket}"
_KEEP_S = 300
_FLUSH_INTERVAL_S = 1.0

KEEP_MINUTES = 60
_MINUTE_KEY = "activity:m:{minute}"
_GAUGE_KEY = "activity:g:{minute}"
_MINUTE_TTL_S = (KEEP_MINUTES + 5) * 60
FAILURES_KEY = "activity:failures"
FAILURES_KEPT = 100
_CALL_FIELD = "call|{method}|{client}|{code}"  # no "|" in a method name, an error code or a client scope (rpc/auth.py)

EVENTS = "events"
RPC_CALLS = "rpc_calls"
RPC_ERRORS = "rpc_errors"
LISTENER_RESTARTS = "listener_restarts"
SOCKETS = "sockets"
USERS_ONLINE = "users_online"
SUCCESS_CODES = ("OK", "REPLAYED")
_HEADLINE = (EVENTS, RPC_CALLS, RPC_ERRORS)


class _Tally:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._failures: deque[str] = deque(maxlen=FAILURES_KEPT)

    def add(self, field: str, amount: int, failure: str | None = None, also: str | None = None) -> None:
        """Count ``amount`` on ``field`` (and on ``also``): one lock for both, this runs on every RPC call."""
        with self._lock:
            self._counts[field] += amount
            if also is not None:
                self._counts[also] += amount
            if failure is not None:
                self._failures.append(failure)
        _flusher.ensure_running()

    def take(self) -> tuple[Counter[str], list[str]]:
        with self._lock:
            counts, self._counts = self._counts, Counter()
            failures = list(self._failures)
            self._failures.clear()
        return counts, failures

    def put_back(self, counts: Counter[str], failures: list[str]) -> None:
        with self._lock:
            self._counts.update(counts)
            self._failures.extendleft(reversed(failures))


_tally = _Tally()


def _write() -> None:
    counts, failures = _tally.take()
    if not counts and not failures:
        return
    now = time.time()
    key = _KEY.format(bucket=int(now) // BUCKET_S)
    minute_key = _MINUTE_KEY.format(minute=int(now) // 60)
    try:
        pipe = get_redis().pipeline(transaction=False)
        for field, amount in counts.items():
            if field in _HEADLINE:
                pipe.hincrby(key, field, amount)
            pipe.hincrby(minute_key, field, amount)
        pipe.expire(key, _KEEP_S)
        pipe.expire(minute_key, _MINUTE_TTL_S)
        if failures:
            pipe.lpush(FAILURES_KEY, *failures)  # oldest first in, so the newest ends up at the head
            pipe.ltrim(FAILURES_KEY, 0, FAILURES_KEPT - 1)
        pipe.execute()
    except (redis.RedisError, OSError):
        _tally.put_back(counts, failures)
        log.warning("activity_flush_failed", pending=sum(counts.values()))


_flusher = PeriodicFlusher("activity", _write, _FLUSH_INTERVAL_S)


def flush() -> None:
    """Write the tally to the current buckets; on a Redis error keep it for the next flush."""
    _flusher.flush()


def record_events_published(count: int = 1) -> None:
    _tally.add(EVENTS, count)


def record_listener_restart(count: int = 1) -> None:
    _tally.add(LISTENER_RESTARTS, count)


@functools.lru_cache(maxsize=4096)  # bounded label values (see _CALL_FIELD); formatting it was a cost per call
def _call_field(method: str, client: str, code: str) -> str:
    return _CALL_FIELD.format(method=method, client=client, code=code)


def record_rpc_call(*, code: str, method: str = "unknown", client: str = "svc", trace_id: str | None = None,
                    duration_ms: float | None = None) -> None:
    """One finished RPC call; any code other than ``OK``/``REPLAYED`` also counts as an error and is kept among the
    latest failures with its trace id (never its message: it may quote the caller's data)."""
    failure = None
    if code not in SUCCESS_CODES:
        _tally.add(RPC_ERRORS, 1)
        failure = json.dumps({"at": time.time(), "method": method, "client": client, "code": code,
                              "trace_id": trace_id, "duration_ms": duration_ms})
    _tally.add(RPC_CALLS, 1, failure, also=_call_field(method, client, code))


def record_gauges(*, process: str, sockets: int, users_online: int | None, now: float | None = None) -> None:
    """A process's sample of its sockets (and of the users online, which every process reads alike); called by its
    heartbeat every few seconds, off the request path."""
    key = _GAUGE_KEY.format(minute=int(now if now is not None else time.time()) // 60)
    pipe = get_redis().pipeline(transaction=False)
    pipe.hset(key, f"{SOCKETS}:{process}", sockets)
    if users_online is not None:
        pipe.hset(key, USERS_ONLINE, users_online)
    pipe.expire(key, _MINUTE_TTL_S)
    pipe.execute()


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


# --- reading the per-minute series ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class CallCount:
    method: str
    client: str
    code: str
    count: int

    @property
    def failed(self) -> bool:
        return self.code not in SUCCESS_CODES


@dataclass(frozen=True)
class Minutes:
    """The last ``len(minutes)`` minutes, oldest first; the last one is the current (partial) minute."""

    starts: list[int]  # unix time of each minute's start
    counts: list[dict[str, int]]
    gauges: list[dict[str, int]]

    def series(self, name: str) -> list[int]:
        if name in (SOCKETS, USERS_ONLINE):
            return [gauge.get(name, 0) for gauge in self.gauges]
        return [minute.get(name, 0) for minute in self.counts]

    def calls(self, *, last: int) -> list[CallCount]:
        """Calls per (method, client, code) over the last ``last`` minutes, most first."""
        totals: Counter[tuple[str, str, str]] = Counter()
        for minute in self.counts[-last:]:
            for field, amount in minute.items():
                if field.startswith("call|"):
                    _, method, client, code = field.split("|", 3)  # client is a scope: "svc" or "c{pk}"
                    totals[(method, client, code)] += amount
        return [CallCount(*labels, count) for labels, count in totals.most_common()]


def minutes(*, count: int = KEEP_MINUTES, now: float | None = None) -> Minutes:
    """The per-minute counts and gauge samples of the last ``count`` minutes, in one round trip."""
    current = int(now if now is not None else time.time()) // 60
    numbers = list(range(current - count + 1, current + 1))
    pipe = get_redis().pipeline(transaction=False)
    for minute in numbers:
        pipe.hgetall(_MINUTE_KEY.format(minute=minute))
        pipe.hgetall(_GAUGE_KEY.format(minute=minute))
    raw = pipe.execute()
    counts = [{field.decode(): int(amount) for field, amount in raw[i].items()} for i in range(0, len(raw), 2)]
    gauges = [_gauge_sample(raw[i]) for i in range(1, len(raw), 2)]
    return Minutes([minute * 60 for minute in numbers], counts, gauges)


def _gauge_sample(fields: dict[bytes, bytes]) -> dict[str, int]:
    sample = {SOCKETS: 0}
    for field, value in fields.items():
        name = field.decode()
        if name.startswith(SOCKETS + ":"):
            sample[SOCKETS] += int(value)
        elif name == USERS_ONLINE:
            sample[USERS_ONLINE] = int(value)
    return sample


def recent_failures(*, limit: int = FAILURES_KEPT) -> list[dict[str, Any]]:
    """The latest failed calls, newest first."""
    return [json.loads(raw) for raw in get_redis().lrange(FAILURES_KEY, 0, limit - 1)]
