"""The SQL mirror of this worker's users: one ListenerState row per (worker, user), for the admin (models.py).

Rows are written on their own thread, the database thread, in batches every ``state_flush_s``: a slow database
delays only this thread, never a lease renewal. A row is rewritten when its user's ``state_version`` moved (attach,
detach, restart), and for ``last_event_at`` at most every ``last_event_write_s``. The same thread removes the rows of
workers found dead (then forgets them in Redis) and runs the session sweep (session_sweep.py).
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterable

import redis
import structlog
from django.db import Error as DatabaseError
from django.db import close_old_connections, connections

from . import ownership, services
from .config import ListenersConfig
from .user_listeners import UserListeners

log = structlog.get_logger(__name__)


class StateMirror:
    """What the rows should be, as told by the other threads (attach, drop, dead workers), and their writes."""

    def __init__(self, config: ListenersConfig) -> None:
        self._config = config
        self._worker_id = config.worker_id
        self._lock = threading.Lock()  # the sets below are filled by other threads
        self._deletes: set[str] = set()  # users dropped: their rows go
        self._dead_workers: set[str] = set()  # their rows go, then they are forgotten
        self._written: dict[str, tuple[int, object, float]] = {}  # uid -> (state version, last_event_at, written at)

    # --- told by other threads ---------------------------------------------------------------------------------------
    def attached(self, uid: str) -> None:
        with self._lock:
            self._deletes.discard(uid)

    def dropped(self, uid: str) -> None:
        with self._lock:
            self._deletes.add(uid)

    def workers_dead(self, worker_ids: Iterable[str]) -> None:
        with self._lock:
            self._dead_workers.update(worker_ids)

    def rewrite_all(self) -> None:
        """We had been taken for dead (a long pause) and our rows removed: write them all again."""
        self._written.clear()

    # --- the database thread ---------------------------------------------------------------------------------------
    def run_forever(self, stopping: threading.Event, users: Callable[[], list[UserListeners]],
                    sweep: Callable[[], None]) -> None:
        """Every ``state_flush_s``: our rows, dead workers' rows, then ``sweep`` (the registry's sessions)."""
        try:
            while not stopping.wait(self._config.state_flush_s):
                try:
                    self.write(users())
                    self.forget_dead_workers()
                    sweep()
                except (redis.RedisError, OSError):
                    log.warning("listener_state_cleanup_failed")
                except DatabaseError:
                    log.warning("listener_state_database_failed")
        finally:
            connections.close_all()  # this thread's connections

    def write(self, users: list[UserListeners]) -> None:
        now = time.monotonic()
        with self._lock:
            pending_deletes = set(self._deletes)
        records, versions = [], {}
        for user in users:
            version, last_event_at = user.state_version, user.last_event_at
            written = self._written.get(user.uid)
            event_due = (written is not None and last_event_at != written[1]
                         and now - written[2] >= self._config.last_event_write_s)
            if written is None or written[0] != version or event_due:
                records.append(user.record())
                versions[user.uid] = (version, last_event_at, now)
        deletes = sorted(pending_deletes - set(versions))
        if not records and not deletes:
            return
        try:
            close_old_connections()
            services.save_listener_states(worker_id=self._worker_id, records=records)
            if deletes:
                services.delete_listener_states(worker_id=self._worker_id, uids=deletes)
        except DatabaseError:
            log.warning("listener_state_write_failed", rows=len(records), deletes=len(deletes))
            return
        self._written.update(versions)
        with self._lock:
            self._deletes.difference_update(deletes)
        for uid in deletes:
            self._written.pop(uid, None)

    def forget_dead_workers(self) -> None:
        with self._lock:
            dead, self._dead_workers = self._dead_workers, set()
        if not dead:
            return
        registered = ownership.registered_workers()
        for worker_id in dead:
            if registered.get(worker_id) is not False:
                continue  # back to life (it had only paused), or already forgotten by another worker
            if self.delete_all(worker_id):
                ownership.forget_worker(worker_id)
                log.warning("listeners_worker_gone", worker_id=worker_id)
            else:
                self.workers_dead([worker_id])

    @staticmethod
    def delete_all(worker_id: str) -> bool:
        """Remove every row of ``worker_id`` (one that stopped or died); False when the database failed."""
        try:
            close_old_connections()
            services.delete_listener_states(worker_id=worker_id)
        except DatabaseError:
            log.warning("listener_state_cleanup_failed", worker_id=worker_id)
            return False
        return True
