"""The ASGI processes' registry: each process heart-beats a small hash in Redis, so the admin's workers page lists
every process of every node (the listeners workers have their own registry, workflows/ownership.py).

* ``gateway:process:{host}:{pid}`` (hash, TTL ``_TTL_S``): pid, host, started_at, heartbeat_at, sockets, users,
  channels, the counts realtime.dispatcher.local_counts() reads in this process;
* ``gateway:processes`` (sorted set, score = last heartbeat): who beat recently; entries older than ``_FORGET_S``
  are dropped by the next beat of any process, so the set stays bounded after restarts.

The same beat samples the sockets and users-online gauges for the dashboard's charts (core/activity.py). A daemon
thread (started by listeners_project/asgi.py) does it every ``BEAT_S`` seconds, off the event loop.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass

import redis
import structlog

from core import activity
from core.integrations.redis import get_redis
from realtime.dispatcher import local_counts
from registry.selectors import users_online_count

log = structlog.get_logger(__name__)

BEAT_S = 5.0
_TTL_S = 30
_FORGET_S = 3600
PROCESSES_KEY = "gateway:processes"
_PROCESS_KEY = "gateway:process:{process_id}"
_STARTED_AT = time.time()
_started = threading.Lock()
_thread: threading.Thread | None = None


def process_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def beat() -> None:
    """One heartbeat of this process (and one gauge sample)."""
    now = time.time()
    counts = local_counts()
    me = process_id()
    pipe = get_redis().pipeline(transaction=False)
    key = _PROCESS_KEY.format(process_id=me)
    pipe.hset(key, mapping={"pid": os.getpid(), "host": socket.gethostname(), "started_at": _STARTED_AT,
                            "heartbeat_at": now, **counts})
    pipe.expire(key, _TTL_S)
    pipe.zadd(PROCESSES_KEY, {me: now})
    pipe.zremrangebyscore(PROCESSES_KEY, "-inf", now - _FORGET_S)
    pipe.execute()
    activity.record_gauges(process=me, sockets=counts["sockets"], users_online=users_online_count())


def _beat_forever() -> None:
    while True:
        try:
            beat()
        except (redis.RedisError, OSError):
            log.warning("process_heartbeat_failed")  # Redis down: /readyz says so; the next beat retries
        time.sleep(BEAT_S)


def start_heartbeat() -> None:
    """Start this process's heartbeat thread once."""
    global _thread
    with _started:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_beat_forever, name="process-heartbeat", daemon=True)
            _thread.start()


@dataclass(frozen=True)
class ProcessInfo:
    process_id: str
    host: str
    pid: int
    started_at: float | None
    heartbeat_at: float
    sockets: int
    users: int
    channels: int
    alive: bool


def list_processes(*, now: float | None = None) -> list[ProcessInfo]:
    """Every process that beat within the last hour, the live ones (hash not expired) first. Two round trips."""
    now = now if now is not None else time.time()
    client = get_redis()
    beats = client.zrevrangebyscore(PROCESSES_KEY, "+inf", now - _FORGET_S, withscores=True)
    pipe = client.pipeline(transaction=False)
    for member, _ in beats:
        pipe.hgetall(_PROCESS_KEY.format(process_id=member.decode()))
    rows = []
    for (member, last_beat), fields in zip(beats, pipe.execute()):
        values = {name.decode(): value.decode() for name, value in fields.items()}
        process = member.decode()
        rows.append(ProcessInfo(
            process_id=process, host=values.get("host", process.rsplit(":", 1)[0]),
            pid=int(values.get("pid", process.rsplit(":", 1)[-1])),
            started_at=float(values["started_at"]) if "started_at" in values else None,
            heartbeat_at=last_beat, sockets=int(values.get("sockets", 0)), users=int(values.get("users", 0)),
            channels=int(values.get("channels", 0)), alive=bool(values),
        ))
    return sorted(rows, key=lambda row: (not row.alive, row.process_id))
