"""The maintainer thread: every tick, and at once when woken (a peer died, our subscriber reconnected), it heart-beats
the worker, renews its leases and claims unowned users (leases.py), re-reads its users' members and runs the
watchdog. Between ticks, while attached users wait for their first snapshots, it publishes the counts more often.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

import redis
import structlog
from django.db import Error as DatabaseError

from realtime import presence

from .config import ListenersConfig
from .leases import LeaseKeeper
from .users import OwnedUsers

log = structlog.get_logger(__name__)

# While attached users wait for their first snapshots (a takeover, a start), the counts are published this often,
# for at most _SETTLING_MAX_S after the last attach (a user whose listener keeps failing never becomes ready).
_SETTLING_BEAT_S = 0.1
_SETTLING_MAX_S = 10.0

Stats = dict[str, int | float]


class Maintainer:
    """The maintainer thread's schedule; the work itself is the lease keeper's, the users' and their listeners'."""

    def __init__(self, config: ListenersConfig, users: OwnedUsers, leases: LeaseKeeper, *,
                 heartbeat: Callable[[], Stats], wake: threading.Event) -> None:
        self._config = config
        self._users = users
        self._leases = leases
        self._heartbeat = heartbeat  # publishes and returns the worker's counts (what /healthz reports)
        self._wake = wake  # tick now
        self._resubscribed = threading.Event()  # events may have been missed: re-read every user's members

    def resubscribed(self) -> None:
        """Our subscriber (re)subscribed: reconcile every user, and renew now (peers may have taken our users while
        we were unsubscribed)."""
        self._resubscribed.set()
        self._wake.set()

    def run_forever(self, stopping: threading.Event) -> None:
        next_tick = next_members = 0.0
        settling = False  # users attached whose initial snapshots are still coming: publish the counts sooner
        while True:
            wait = next_tick - time.monotonic()
            woken = self._wake.wait(max(0.0, min(wait, _SETTLING_BEAT_S) if settling else wait))
            self._wake.clear()
            if stopping.is_set():
                return
            now = time.monotonic()
            try:
                if not woken and now < next_tick:
                    settling = self._beat()  # only the counts (what /healthz and a takeover wait for)
                    continue
                next_tick = now + self._config.tick_s
                settling = self._beat()
                # Every tick (one Lua call per 1,000 users), and at once after our subscriber reconnected: a worker
                # that peers took for dead learns quickly that its users moved, and stops publishing for them.
                self._leases.renew(self._users)
                # Woken: a peer left (its users need claiming) or our subscription came back (events were missed).
                self._leases.claim_unowned(self._users, now, full=woken)
                if now >= next_members or self._resubscribed.is_set():
                    next_members = now + self._config.members_refresh_s
                    self._resubscribed.clear()
                    self._refresh_members()
                self._watchdog(now)
            except (redis.RedisError, OSError, DatabaseError):
                log.warning("listeners_maintenance_failed")
            except Exception:  # a bug here must not stop lease renewal for good; it is logged
                log.exception("listeners_maintenance_crashed")

    def _beat(self) -> bool:
        """Heart-beat; True while some attached user is not ready yet (and was attached recently)."""
        stats = self._heartbeat()
        return stats["ready_users"] < stats["users"] and time.monotonic() - self._users.last_attach_at < _SETTLING_MAX_S

    def _refresh_members(self) -> None:
        """Members can expire without an announcement (a dead gateway's chat sockets): re-read them for our users."""
        users = [user for user in self._users.snapshot() if user.attached]
        if not users:
            return
        live = presence.live_members_many(user.uid for user in users)
        for user in users:
            members = set(live.get(user.uid, ()))
            if members != user.members or user.has_unresolved_chats:
                self._users.schedule_reconcile(user.uid)

    def _watchdog(self, now: float) -> None:
        """Replace the listeners that failed, closed, stalled or never opened (UserListeners.unhealthy)."""
        for user in self._users.snapshot():
            for kind, reason, stream in user.unhealthy(now):
                self._users.submit(user.uid, lambda user=user, kind=kind, reason=reason, stream=stream:
                                   user.restart(kind, reason, stream))
