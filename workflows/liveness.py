"""Which workers are alive: registered, heart-beating and subscribed to their control channel (ownership.py).

A peer whose subscription is gone for longer than a short grace has died (SIGKILL, OOM, crash: the kernel closed its
sockets): it is declared dead at once rather than when its leases expire, and the lease keeper then deletes its
leases (leases.py). The liveness thread polls often (two round trips, whatever the number of users), so that a dead
peer's users are re-attached well within the lease TTL; the subscriber also refreshes at once when a worker
registers, leaves or dies (``ownership.WORKERS_CHANNEL``).
"""
from __future__ import annotations

import threading
import time
from typing import Callable

import redis
import structlog

from . import ownership
from .config import ListenersConfig

log = structlog.get_logger(__name__)


class PeerLiveness:
    """This worker's view of the live workers (rendezvous hashing spreads the users over them)."""

    def __init__(self, config: ListenersConfig, *, on_left: Callable[[], None],
                 on_dead: Callable[[set[str]], None]) -> None:
        self._config = config
        self._worker_id = config.worker_id
        self._on_left = on_left  # a worker left the live set: its users need claiming now
        self._on_dead = on_dead  # registered workers that are not alive: their ListenerState rows go
        self.live_workers: list[str] = [config.worker_id]  # replaced whole: read without the lock
        self._unsubscribed_since: dict[str, float] = {}  # peer -> when it was first seen without a subscription
        self._lock = threading.Lock()  # refreshes come from the liveness and the subscriber thread

    def is_preferred(self, uid: str) -> bool:
        """This worker is ``uid``'s preferred live worker: it claims the user at once."""
        return ownership.preferred_worker(uid, self.live_workers) == self._worker_id

    def watch_forever(self, stopping: threading.Event) -> None:
        """The liveness thread."""
        while not stopping.wait(self._next_poll_in()):
            if not self.refresh_now():
                stopping.wait(self._config.tick_s)

    def refresh_now(self) -> bool:
        """Refresh, and wake the claims when a worker left; False (logged) when Redis is unreachable."""
        try:
            if self.refresh(time.monotonic()):
                self._on_left()
        except (redis.RedisError, OSError):
            log.warning("listeners_liveness_check_failed")
            return False
        return True

    def _next_poll_in(self) -> float:
        """The poll period, or less when a suspect peer's grace ends sooner: its users should not wait for more."""
        with self._lock:
            suspect_since = min(self._unsubscribed_since.values(), default=None)
        if suspect_since is None:
            return self._config.liveness_poll_s
        grace_ends_in = suspect_since + self._config.liveness_grace_s - time.monotonic()
        return max(0.01, min(self._config.liveness_poll_s, grace_ends_in))

    def refresh(self, now: float) -> bool:
        """Re-read the live workers, declaring dead a peer that lost its subscription for longer than the grace.
        True when a worker left the live set (its users need claiming)."""
        with self._lock:
            return self._refresh_locked(now)

    def _refresh_locked(self, now: float) -> bool:
        liveness = ownership.worker_liveness()
        workers = {worker_id: alive for worker_id, (alive, _) in liveness.items()}
        peers = [worker for worker, alive in workers.items() if alive and worker != self._worker_id]
        live = [self._worker_id] if workers.get(self._worker_id) else []
        for worker_id in peers:
            if liveness[worker_id][1] > 0:
                self._unsubscribed_since.pop(worker_id, None)
                live.append(worker_id)
                continue
            since = self._unsubscribed_since.setdefault(worker_id, now)
            if now - since < self._config.liveness_grace_s or not ownership.declare_dead(worker_id):
                live.append(worker_id)  # maybe reconnecting its subscriber (or it just did): not yet
                continue
            del self._unsubscribed_since[worker_id]
            workers[worker_id] = False
            log.warning("listeners_worker_dead", worker_id=worker_id, unsubscribed_s=round(now - since, 2))
        self._unsubscribed_since = {w: t for w, t in self._unsubscribed_since.items() if w in peers}
        previous, self.live_workers = self.live_workers, sorted(live) or [self._worker_id]
        self._on_dead({w for w, alive in workers.items() if not alive and w != self._worker_id})
        return bool(set(previous) - set(self.live_workers))
