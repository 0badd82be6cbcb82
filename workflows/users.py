"""The users this worker owns, and their reconcile: claim and attach, follow member changes, detach after a grace.

Attach triggers (presence events, the maintainer, staff commands) all queue ``_reconcile`` under the uid, so
concurrent triggers find the user attached and do nothing: one set of listeners per user and per worker; the lease
(leases.py) makes it one per user across workers.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

import structlog

from realtime import presence

from . import ownership
from .listeners.base import ListenerContext
from .liveness import PeerLiveness
from .state_mirror import StateMirror
from .user_listeners import UserListeners

log = structlog.get_logger(__name__)


class OwnedUsers:
    """``users``: the users this worker owns (attached, or parked by staff). Their queues run on ``ctx.executor``."""

    def __init__(self, ctx: ListenerContext, peers: PeerLiveness, mirror: StateMirror, *,
                 on_attached: Callable[[str], None]) -> None:
        self._ctx = ctx
        self._config = ctx.config
        self._peers = peers
        self._mirror = mirror
        self._on_attached = on_attached  # the lease keeper stops counting the user as unowned
        self.users: dict[str, UserListeners] = {}
        self.attach_count = 0  # attaches performed since start (tests count them)
        self.last_attach_at = 0.0
        self._lock = threading.Lock()  # users, _queued, _claimed_ahead
        self._queued: dict[str, bool] = {}  # uid -> reconcile waiting in its queue (and whether presence changed)
        # uid -> (members, when) for users claimed in bulk (leases.py): their reconcile skips both round trips
        self._claimed_ahead: dict[str, tuple[list[str], float]] = {}
        self._detach_at: dict[str, float] = {}  # uid -> when its grace period ends

    # --- reads (any thread) --------------------------------------------------------------------------------------------
    def snapshot(self) -> list[UserListeners]:
        with self._lock:
            return list(self.users.values())

    def owned_uids(self) -> list[str]:
        with self._lock:
            return list(self.users)

    def owns(self, uid: str) -> bool:
        return uid in self.users

    def is_detaching(self, uid: str) -> bool:
        """Offline, in its grace period (see ``_reconcile``)."""
        return uid in self._detach_at

    # --- triggers (any thread) -----------------------------------------------------------------------------------------
    def submit(self, uid: str, task: Callable[[], None]) -> None:
        self._ctx.executor.submit(uid, task)

    def trigger(self, uid: str) -> None:
        """A presence change for ``uid``: reconcile it if we own it or are its preferred worker."""
        if uid in self.users or self._peers.is_preferred(uid):
            self.schedule_reconcile(uid, presence_changed=True)

    def schedule_reconcile(self, uid: str, *, presence_changed: bool = False) -> None:
        """Queue one reconcile of ``uid``; triggers arriving before it starts are folded into it (it reads the
        current presence when it runs)."""
        with self._lock:
            if uid in self._queued:
                self._queued[uid] = self._queued[uid] or presence_changed
                return
            self._queued[uid] = presence_changed
        self.submit(uid, lambda: self._reconcile(uid))

    def claimed_ahead(self, uid: str, members: list[str], at: float) -> None:
        """``uid``'s lease was claimed in bulk and its members read: its reconcile uses them while fresh."""
        with self._lock:
            self._claimed_ahead[uid] = (members, at)
        self.schedule_reconcile(uid)

    def drop_later(self, uid: str, reason: str) -> None:
        """Detach ``uid`` in its queue, keeping the lease (lost to a peer, or released in bulk by ``stop``)."""
        self.submit(uid, lambda: self._drop(uid, reason, release=False))

    def control(self, action: str, uid: str) -> None:
        """A staff command (ownership.send_control), run in the user's queue."""
        self.submit(uid, lambda: self._on_control(action, uid))

    # --- in the user's queue -------------------------------------------------------------------------------------------
    def _reconcile(self, uid: str) -> None:
        """Claim and attach, follow member changes, or start the detach grace period."""
        with self._lock:
            presence_changed = self._queued.pop(uid, False)
            ahead = self._claimed_ahead.pop(uid, None)
        if ahead is not None and (presence_changed or time.monotonic() - ahead[1] > self._config.lease_ttl_s / 2):
            ahead = None  # members changed since, or the claim is old (a long backlog): read and claim again
        members = ahead[0] if ahead is not None else presence.live_members(uid)
        user = self.users.get(uid)
        if user is None:
            if members and (ahead is not None or ownership.claim(uid, self._config.worker_id,
                                                                 self._config.lease_ttl_ms)):
                user = UserListeners(uid, self._ctx)
                with self._lock:
                    self.users[uid] = user
                self._mirror.attached(uid)
                self._on_attached(uid)
                self.attach_count += 1
                self.last_attach_at = time.monotonic()
                user.attach(members)
            return
        if members:
            self._detach_at.pop(uid, None)
            if user.attached:
                user.refresh_members(members)
            elif presence_changed:
                user.attach(members)  # parked by staff: back on the user's next presence change
            return
        if uid not in self._detach_at:
            self._detach_at[uid] = time.monotonic() + self._config.detach_grace_s
            self._ctx.loop.call_later(self._config.detach_grace_s,
                                      lambda: self.submit(uid, lambda: self._detach_if_still_offline(uid)))

    def _detach_if_still_offline(self, uid: str) -> None:
        due = self._detach_at.get(uid)
        if due is None or time.monotonic() < due - 0.05:
            return  # back online in the meantime, or a newer grace period is running
        if presence.live_members(uid):
            del self._detach_at[uid]
            self.schedule_reconcile(uid)
            return
        self._drop(uid, "offline", release=True)

    def _drop(self, uid: str, reason: str, *, release: bool) -> None:
        with self._lock:
            user = self.users.pop(uid, None)
        self._detach_at.pop(uid, None)
        if user is None:
            return
        user.detach(reason)
        if release:
            ownership.release([uid], self._config.worker_id)
        self._mirror.dropped(uid)

    def _on_control(self, action: str, uid: str) -> None:
        user = self.users.get(uid)
        if user is None:
            return
        log.info("listener_staff_action", uid=uid, action=action)
        if action == "restart":
            user.restart_all("staff")
        elif action == "detach":
            user.detach("staff")
        elif action == "resync":
            user.resync()
