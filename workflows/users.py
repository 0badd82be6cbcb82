"""The users this worker owns, and their reconcile: claim and attach, follow member changes, detach after a grace.

Attach triggers (presence events, the maintainer, staff commands) all queue ``_reconcile`` under the uid, so
concurrent triggers find the user attached and do nothing: one set of listeners per user and per worker; the lease
(leases.py) makes it one per user across workers.

A burst of triggers (a thousand logins, a worker start) is pipelined: the first reconcile that has to read presence
reads it for every queued user at once, and claims the unowned ones in the same step (``_read_in_batch``), so the
others start with their members and lease in hand, and attaching costs each user only its listeners' opens (which
do not block: their connections and first snapshots come on the loop, see rtdb_streams.py and firestore_streams.py).
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

_READ_AHEAD_MAX = 1000  # users read and claimed per batch: one round trip each (ownership.claim_many's batch)


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
        # uid -> (members, claimed: True/False, or None when it was not ours to claim), read with another's reconcile
        self._read_ahead: dict[str, tuple[list[str], bool | None, float]] = {}
        self._reading: set[str] = set()  # in a batch read now
        self._claimed_unattached: set[str] = set()  # claimed in a batch, not attached yet: released if it left
        self._batches = 0  # batch reads in flight; while any, presence changes are numbered in _changed_at
        self._change_seq = 0
        self._changed_at: dict[str, int] = {}

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
            if presence_changed:
                self._read_ahead.pop(uid, None)  # read before this change
                if self._batches:
                    self._change_seq += 1
                    self._changed_at[uid] = self._change_seq  # a batch read in flight must not store its read
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
            read = self._read_ahead.pop(uid, None)
        if ahead is not None and (presence_changed or time.monotonic() - ahead[1] > self._config.lease_ttl_s / 2):
            ahead = None  # members changed since, or the claim is old (a long backlog): read and claim again
        if read is not None and time.monotonic() - read[2] > self._config.lease_ttl_s / 2:
            read = None  # the same rule for a batch's read
        if ahead is not None:
            members, claimed = ahead[0], True
        else:
            members, claimed = read[:2] if read is not None else self._read_in_batch(uid)
        user = self.users.get(uid)
        if user is None:
            if not members and uid in self._claimed_unattached:
                self._claimed_unattached.discard(uid)
                ownership.release([uid], self._config.worker_id)  # claimed in a batch, gone since
            if members and (claimed or (claimed is None and ownership.claim(uid, self._config.worker_id,
                                                                            self._config.lease_ttl_ms))):
                self._claimed_unattached.discard(uid)
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

    def _read_in_batch(self, uid: str) -> tuple[list[str], bool | None]:
        """``uid``'s members and claim, read along with those of every user whose reconcile is queued: one
        ``live_members_many`` and one ``claim_many`` for the lot. The others' results wait in ``_read_ahead`` unless
        their presence changed meanwhile."""
        with self._lock:
            batch = [uid] + [other for other in self._queued if other not in self._read_ahead
                             and other not in self._reading and other not in self._claimed_ahead][:_READ_AHEAD_MAX - 1]
            self._reading.update(batch)
            self._batches += 1
            started_seq = self._change_seq
        try:
            members = presence.live_members_many(batch)
            unowned = [other for other in batch if members.get(other) and other not in self.users]
            claimed = set(ownership.claim_many(unowned, self._config.worker_id, self._config.lease_ttl_ms))
        finally:
            with self._lock:
                self._reading.difference_update(batch)
                self._batches -= 1
                changed = {other for other, seq in self._changed_at.items() if seq > started_seq}
                if not self._batches:
                    self._changed_at.clear()
        now = time.monotonic()
        results = {other: (members.get(other, []), (other in claimed) if other in unowned else None, now)
                   for other in batch}
        with self._lock:
            self._claimed_unattached.update(claimed)
            for other in batch[1:]:
                if other in self._queued and other not in changed:
                    self._read_ahead[other] = results[other]
        if uid in changed:  # its presence changed while we read: read it alone (claimed or not, the claim holds)
            return presence.live_members(uid), True if uid in claimed else None
        return results[uid][:2]

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
