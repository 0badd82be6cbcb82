"""Lease handling on the maintainer's tick: renew ours, release a dead peer's, claim online users nobody alive owns.

The lease scripts and keys are in ownership.py. Users are spread by rendezvous hashing over the live workers
(liveness.py): the preferred worker claims a user at once, the others only once it stayed unowned for
``claim_delay_s``. Many users at once (a dead peer's, or everyone at start) are claimed in bulk. What a tick reads is
proportional to what changed (presence announcements, peers leaving), with a read of every online user every
``claim_scan_s`` as the safety net: with M workers, reading the fleet every tick was M reads of it per tick.
"""
from __future__ import annotations

import threading
import time

import structlog

from realtime import presence

from . import ownership
from .config import ListenersConfig
from .liveness import PeerLiveness
from .users import OwnedUsers

log = structlog.get_logger(__name__)


class LeaseKeeper:
    """Our side of the leases; attaching, detaching and the single-user claims are OwnedUsers' (users.py)."""

    def __init__(self, config: ListenersConfig, peers: PeerLiveness) -> None:
        self._config = config
        self._worker_id = config.worker_id
        self._peers = peers
        self._unowned_since: dict[str, float] = {}  # online users without a lease -> when first seen so
        self._orphaned: set[str] = set()  # online users whose lease holder is not live: checked every tick
        self._announced: set[str] = set()  # users on presence:events since the last tick (the subscriber's thread)
        self._lock = threading.Lock()  # _announced
        self._next_scan_at = 0.0  # the next read of every online user (the first tick does one)

    def attached(self, uid: str) -> None:
        """``uid`` is ours now: it is no longer waiting to be claimed."""
        self._unowned_since.pop(uid, None)

    def renew(self, users: OwnedUsers) -> None:
        """One Lua call per 1,000 users; a lease renewed by someone else means a peer took the user: drop it."""
        for uid in ownership.renew(users.owned_uids(), self._worker_id, self._config.lease_ttl_ms):
            log.warning("listener_lease_lost", uid=uid)
            users.drop_later(uid, "lease_lost")

    def announced(self, uid: str) -> None:
        """A presence event for ``uid`` (subscriber thread): the next tick checks whether it needs claiming."""
        with self._lock:
            self._announced.add(uid)

    def claim_unowned(self, users: OwnedUsers, now: float, *, full: bool = False) -> None:
        """Claim the online users nobody alive owns. Every ``claim_scan_s`` (and when ``full``: woken because a peer
        left or our subscription came back) every online user is read, and our users who went offline unnoticed are
        reconciled; between those scans only the users that may have changed are: announced on ``presence:events``
        since the last tick, waiting out the claim delay, or held by a worker that is not live (its lease is
        released or expires). So a steady fleet costs a worker no read per tick, not one per online user."""
        with self._lock:
            announced, self._announced = self._announced, set()
        if full or now >= self._next_scan_at:
            self._next_scan_at = now + self._config.claim_scan_s
            self._scan_everyone(users, now)
            return
        watched = [uid for uid in announced | self._unowned_since.keys() | self._orphaned if not users.owns(uid)]
        if not watched:
            return
        members = presence.live_members_many(watched)
        online = {uid for uid in watched if members.get(uid)}
        self._claim(users, [uid for uid in watched if uid in online], online, now, checked=set(watched))

    def _scan_everyone(self, users: OwnedUsers, now: float) -> None:
        online = presence.online_uids()
        online_set = set(online)
        for uid in users.owned_uids():
            if uid not in online_set and not users.is_detaching(uid):
                users.schedule_reconcile(uid)
        self._claim(users, [uid for uid in online if not users.owns(uid)], online_set, now, checked=None)

    def _claim(self, users: OwnedUsers, candidates: list[str], online: set[str], now: float, *,
               checked: set[str] | None) -> None:
        """Claim the ``candidates`` (online, not ours) nobody alive owns: at once when we are their preferred worker,
        else once unowned for ``claim_delay_s``. ``checked``: the users this pass read (None: every online user)."""
        owners = ownership.owners(candidates)
        self._release_leases_of_gone_workers(owners)
        for uid in list(self._unowned_since):
            if (checked is None or uid in checked) and (owners.get(uid) is not None or uid not in online):
                del self._unowned_since[uid]
        live = set(self._peers.live_workers)
        orphaned = {uid for uid, owner in owners.items() if owner is not None and owner not in live}
        self._orphaned = orphaned if checked is None else (self._orphaned - checked) | orphaned
        due = []
        for uid, current_owner in owners.items():
            if current_owner is not None:
                continue
            preferred = self._peers.is_preferred(uid)
            if preferred or now - self._unowned_since.setdefault(uid, now) >= self._config.claim_delay_s:
                due.append(uid)
        self._claim_in_bulk(users, due)

    def _claim_in_bulk(self, users: OwnedUsers, uids: list[str]) -> None:
        """Claim many users in two round trips, then attach each in its own queue: per user, that leaves only the
        listeners' own connections to open."""
        if len(uids) < 2:
            for uid in uids:
                users.schedule_reconcile(uid)
            return
        claimed = ownership.claim_many(uids, self._worker_id, self._config.lease_ttl_ms)
        members = presence.live_members_many(claimed)
        offline = [uid for uid in claimed if not members.get(uid) and not users.owns(uid)]
        if offline:
            ownership.release(offline, self._worker_id)  # gone meanwhile: do not hold them until the lease expires
        now = time.monotonic()
        for uid in claimed:
            if members.get(uid):
                users.claimed_ahead(uid, members[uid], now)

    def _release_leases_of_gone_workers(self, owners: dict[str, str | None]) -> None:
        """Leases held by a worker we do not count as live, which has no subscriber either, belong to a dead
        process: delete them (compare-and-delete, re-checking the subscription) so their users are claimed now.
        A worker that is only paused keeps its sockets and subscription: its leases are left to expire."""
        held: dict[str, list[str]] = {}
        for uid, current_owner in owners.items():
            if current_owner is not None and current_owner != self._worker_id \
                    and current_owner not in self._peers.live_workers:
                held.setdefault(current_owner, []).append(uid)
        for worker_id, uids in held.items():
            released = ownership.release_if_gone(uids, worker_id)
            if released > 0:
                log.info("listener_leases_of_dead_worker_released", worker_id=worker_id, users=released)
            if released >= 0:
                owners.update(ownership.owners(uids))  # usually all None now; re-read, not assumed
