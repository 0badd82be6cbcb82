"""The listeners worker: follows presence, owns users through Redis leases, and keeps their listeners healthy.

Threads (a fixed handful, whatever the number of users): the event loop (every Firestore stream and every timer),
the per-user queue threads (actors.py), one Redis subscriber (``presence:events`` and this worker's control
channel, whose subscription is also this worker's liveness, see ownership.py), the liveness thread, which polls
the peers' subscriptions and declares a dead one so, the maintainer, which every tick (and at once after a death)
heart-beats the worker, renews its leases, claims online users nobody alive owns and runs the watchdog, and the
state thread, which writes ListenerState rows (a slow database never delays a lease renewal). Each Realtime DB
listener adds the SDK's own thread.

Attach triggers (presence events, the maintainer, staff commands) all queue ``_reconcile_user`` under the uid, so
concurrent triggers find the user attached and do nothing: one set of listeners per user and per worker; the lease
makes it one per user across workers.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

import redis
import structlog
from django.conf import settings
from django.db import Error as DatabaseError, close_old_connections, connections

from core.integrations.redis import new_sync_subscriber
from realtime import presence
from registry.services import sweep_expired_sessions

from . import ownership, services
from .actors import KeyedSerialExecutor
from .config import ListenersConfig
from .firestore_streams import EventLoopThread, ListenChannelPool
from .user_listeners import WORKFLOW, ListenerContext, UserListeners

log = structlog.get_logger(__name__)

# While attached users wait for their first snapshots (a takeover, a start), the counts are published this often,
# for at most _SETTLING_MAX_S after the last attach (a user whose listener keeps failing never becomes ready).
_SETTLING_BEAT_S = 0.1
_SETTLING_MAX_S = 10.0


class ListenersWorker:
    def __init__(self, config: ListenersConfig) -> None:
        self.config = config
        self.worker_id = config.worker_id
        self.users: dict[str, UserListeners] = {}  # the users this worker owns (attached, or parked by staff)
        self.attach_count = 0  # attaches performed since start (tests count them)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._wake = threading.Event()  # tick now: a peer died (claim its users), we resubscribed (renew)
        self._detach_at: dict[str, float] = {}  # uid -> when its grace period ends
        self._unowned_since: dict[str, float] = {}
        self._last_attach_at = 0.0
        self._live_workers: list[str] = [self.worker_id]
        self._written: dict[str, tuple[int, object, float]] = {}  # uid -> (state version, last_event_at, written at)
        self._state_deletes: set[str] = set()
        self._dead_workers: set[str] = set()
        self._resubscribed = threading.Event()
        self._subscribed = threading.Event()  # the control channel is subscribed: peers see this worker alive
        self._registered = threading.Event()  # first heartbeat done and live workers known: presence events count
        self._subscriber_stop = threading.Event()  # set last in stop(): the subscription outlives the users
        self._unsubscribed_since: dict[str, float] = {}  # peer -> when it was first seen without a subscription
        self._liveness_lock = threading.Lock()  # _unsubscribed_since and _live_workers' updates
        self._queued: dict[str, bool] = {}  # uid -> reconcile waiting in its queue (and whether presence changed)
        # uid -> (members, when) for users the maintainer claimed in bulk: their reconcile skips both round trips
        self._claimed_ahead: dict[str, tuple[list[str], float]] = {}
        self._threads: list[threading.Thread] = []  # liveness, maintainer and state thread
        self._subscriber: threading.Thread | None = None

    @property
    def _ttl_ms(self) -> int:
        return int(self.config.lease_ttl_s * 1000)

    # --- lifecycle ----------------------------------------------------------------------------------------------------
    def start(self) -> "ListenersWorker":
        self.loop = EventLoopThread()
        self.executor = KeyedSerialExecutor(self.config.threads)
        self.channels = ListenChannelPool(self.loop, self.config.streams_per_connection)
        self.ctx = ListenerContext(self.config, self.executor, self.loop, self.channels)
        # Subscribe before registering: from its first heartbeat on, peers take a worker without a subscription on
        # its control channel for dead.
        self._subscriber = threading.Thread(target=self._subscribe_forever, name="listeners-subscriber", daemon=True)
        self._subscriber.start()
        if not self._subscribed.wait(10):
            log.warning("listeners_subscriber_not_ready")  # registered anyway; peers' grace, then its retries
        ownership.heartbeat(self.worker_id, self.stats(), self._ttl_ms)
        self._refresh_live_workers(time.monotonic())
        self._registered.set()
        for name, target in (("listeners-liveness", self._watch_peers_forever),
                             ("listeners-maintainer", self._maintain_forever),
                             ("listeners-state", self._write_states_forever)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("listeners_worker_started", worker_id=self.worker_id, lease_ttl_s=self.config.lease_ttl_s)
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Detach everyone, hand the users back (released leases: another worker claims them at once), deregister.
        The subscription goes last: while it lasts, peers do not take this worker's users (no duplicate events)."""
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=timeout_s)
        with self._lock:
            uids = list(self.users)
        for uid in uids:
            self.executor.submit(uid, lambda uid=uid: self._drop_user(uid, "worker_stopping", release=False))
        self.executor.wait_idle(timeout_s)
        ownership.release(uids, self.worker_id)
        ownership.forget_worker(self.worker_id)
        self._delete_all_states(self.worker_id)
        self._subscriber_stop.set()
        if self._subscriber is not None:
            self._subscriber.join(timeout=timeout_s)
        self.executor.stop()
        self.channels.close()
        self.loop.stop()
        log.info("listeners_worker_stopped", worker_id=self.worker_id, users=len(uids))

    def stats(self) -> dict[str, int | float]:
        with self._lock:
            users = list(self.users.values())
        attached = [user for user in users if user.attached]
        streams = self.channels.streams_per_channel()
        return {
            "users": len(attached),
            "workflow_users": sum(1 for user in attached if WORKFLOW in user.wanted),
            "ready_users": sum(1 for user in attached if user.ready),
            "firestore_connections": len(streams),
            "firestore_streams": sum(streams),
            "max_streams_per_connection": max(streams, default=0),
            "heartbeat_at": time.time(),
        }

    # --- triggers -----------------------------------------------------------------------------------------------------
    def trigger(self, uid: str) -> None:
        """A presence change for ``uid`` (thread-safe): reconcile it if we own it or are its preferred worker."""
        if uid in self.users or ownership.preferred_worker(uid, self._live_workers) == self.worker_id:
            self._schedule_reconcile(uid, presence_changed=True)

    def _submit(self, uid: str, task: Callable[[], None]) -> None:
        self.executor.submit(uid, task)

    def _schedule_reconcile(self, uid: str, *, presence_changed: bool = False) -> None:
        """Queue one reconcile of ``uid``; triggers arriving before it starts are folded into it (it reads the
        current presence when it runs)."""
        with self._lock:
            if uid in self._queued:
                self._queued[uid] = self._queued[uid] or presence_changed
                return
            self._queued[uid] = presence_changed
        self._submit(uid, lambda: self._reconcile_user(uid))

    def _reconcile_user(self, uid: str) -> None:
        """Runs in the uid's queue: claim and attach, follow member changes, or start the detach grace period."""
        with self._lock:
            presence_changed = self._queued.pop(uid, False)
            ahead = self._claimed_ahead.pop(uid, None)
        if ahead is not None and (presence_changed or time.monotonic() - ahead[1] > self.config.lease_ttl_s / 2):
            ahead = None  # members changed since, or the claim is old (a long backlog): read and claim again
        members = ahead[0] if ahead is not None else presence.live_members(uid)
        user = self.users.get(uid)
        if user is None:
            if members and (ahead is not None or ownership.claim(uid, self.worker_id, self._ttl_ms)):
                user = UserListeners(uid, self.ctx)
                with self._lock:
                    self.users[uid] = user
                    self._state_deletes.discard(uid)
                self._unowned_since.pop(uid, None)
                self.attach_count += 1
                self._last_attach_at = time.monotonic()
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
            self._detach_at[uid] = time.monotonic() + self.config.detach_grace_s
            self.loop.call_later(self.config.detach_grace_s,
                                 lambda: self._submit(uid, lambda: self._detach_if_still_offline(uid)))

    def _detach_if_still_offline(self, uid: str) -> None:
        due = self._detach_at.get(uid)
        if due is None or time.monotonic() < due - 0.05:
            return  # back online in the meantime, or a newer grace period is running
        if presence.live_members(uid):
            del self._detach_at[uid]
            self._schedule_reconcile(uid)
            return
        self._drop_user(uid, "offline", release=True)

    def _drop_user(self, uid: str, reason: str, *, release: bool) -> None:
        with self._lock:
            user = self.users.pop(uid, None)
        self._detach_at.pop(uid, None)
        if user is None:
            return
        user.detach(reason)
        if release:
            ownership.release([uid], self.worker_id)
        with self._lock:
            self._state_deletes.add(uid)

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

    # --- Redis subscriber -------------------------------------------------------------------------------------------
    def _subscribe_forever(self) -> None:
        delay = 0.1
        control = ownership.control_channel(self.worker_id)
        while not self._subscriber_stop.is_set():
            pubsub = new_sync_subscriber().pubsub(ignore_subscribe_messages=True)
            try:
                # Control first: on a cluster the connection goes to its slot's node, where peers count it.
                pubsub.subscribe(control, presence.EVENTS_CHANNEL, ownership.WORKERS_CHANNEL)
                delay = 0.1  # the server is back: the next drop reconnects quickly again (peers' liveness grace)
                self._subscribed.set()
                self._resubscribed.set()  # events may have been missed meanwhile: the maintainer reconciles all
                self._wake.set()  # ...and renews now: peers may have taken our users while we were unsubscribed
                self._registered.wait(30)  # start() registers right after the first subscription
                while not self._subscriber_stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None:
                        self._on_message(message["channel"].decode(), message["data"])
            except (redis.RedisError, OSError):
                log.warning("listeners_subscriber_reconnecting", retry_in_s=delay)
                self._subscriber_stop.wait(delay)
                delay = min(delay * 2, 5.0)
            finally:
                pubsub.close()

    def _on_message(self, channel: str, data: bytes) -> None:
        if self._stopping.is_set():
            return  # stop() is handing the users back: no new claims, no staff commands
        if channel == presence.EVENTS_CHANNEL:
            uid = presence.parse_event(data).get("uid")
            if isinstance(uid, str) and uid:
                self.trigger(uid)
            return
        if channel == ownership.WORKERS_CHANNEL:
            # Inline, before the next presence event: users announced after a peer registered go to it.
            try:
                if self._refresh_live_workers(time.monotonic()):
                    self._wake.set()
            except (redis.RedisError, OSError):
                log.warning("listeners_liveness_check_failed")  # the liveness thread's next poll catches up
            return
        command = ownership.parse_control(data)
        if command is not None:
            action, uid = command
            self._submit(uid, lambda: self._on_control(action, uid))

    # --- maintainer ---------------------------------------------------------------------------------------------------
    def _maintain_forever(self) -> None:
        next_tick = next_members = 0.0
        settling = False  # users attached whose initial snapshots are still coming: publish the counts sooner
        while True:
            wait = next_tick - time.monotonic()
            woken = self._wake.wait(max(0.0, min(wait, _SETTLING_BEAT_S) if settling else wait))
            self._wake.clear()
            if self._stopping.is_set():
                return
            now = time.monotonic()
            try:
                if not woken and now < next_tick:
                    settling = self._heartbeat()  # only the counts (what /healthz and a takeover wait for)
                    continue
                next_tick = now + self.config.tick_s
                settling = self._heartbeat()
                # Every tick (one Lua call per 1,000 users), and at once after our subscriber reconnected: a worker
                # that peers took for dead learns quickly that its users moved, and stops publishing for them.
                self._renew_leases()
                self._claim_unowned(now)
                if now >= next_members or self._resubscribed.is_set():
                    next_members = now + self.config.members_refresh_s
                    self._resubscribed.clear()
                    self._refresh_members()
                self._watchdog(now)
            except (redis.RedisError, OSError, DatabaseError):
                log.warning("listeners_maintenance_failed")
            except Exception:  # a bug here must not stop lease renewal for good; it is logged
                log.exception("listeners_maintenance_crashed")

    def _heartbeat(self) -> bool:
        """Publish our counts and stay registered; True while some attached user is not ready yet."""
        stats = self.stats()
        if ownership.heartbeat(self.worker_id, stats, self._ttl_ms):
            # We had been taken for dead (a long pause) and our rows removed: write them all again.
            self._written.clear()
        return stats["ready_users"] < stats["users"] and time.monotonic() - self._last_attach_at < _SETTLING_MAX_S

    def _renew_leases(self) -> None:
        with self._lock:
            uids = list(self.users)
        for uid in ownership.renew(uids, self.worker_id, self._ttl_ms):
            log.warning("listener_lease_lost", uid=uid)
            self._submit(uid, lambda uid=uid: self._drop_user(uid, "lease_lost", release=False))

    # --- liveness of the peers (the liveness thread) ------------------------------------------------------------
    def _watch_peers_forever(self) -> None:
        """Two round trips per poll, whatever the number of users: cheap enough to poll far more often than the
        tick, so that a dead peer's users are re-attached well within the lease TTL."""
        while not self._stopping.wait(self._next_poll_in()):
            try:
                if self._refresh_live_workers(time.monotonic()):
                    self._wake.set()
            except (redis.RedisError, OSError):
                log.warning("listeners_liveness_check_failed")
                self._stopping.wait(self.config.tick_s)

    def _next_poll_in(self) -> float:
        """The poll period, or less when a suspect peer's grace ends sooner: its users should not wait for more."""
        with self._liveness_lock:
            suspect_since = min(self._unsubscribed_since.values(), default=None)
        if suspect_since is None:
            return self.config.liveness_poll_s
        grace_ends_in = suspect_since + self.config.liveness_grace_s - time.monotonic()
        return max(0.01, min(self.config.liveness_poll_s, grace_ends_in))

    def _refresh_live_workers(self, now: float) -> bool:
        """Live workers: registered, heart-beating and subscribed to their control channel. A peer that lost its
        subscription for longer than the grace died (SIGKILL, OOM, crash: the kernel closed its sockets): declare
        it dead now rather than when its leases expire; ``_claim_unowned`` then deletes its leases. True when a
        worker left the live set (its users need claiming). Called by the liveness and the subscriber thread."""
        with self._liveness_lock:
            return self._refresh_live_workers_locked(now)

    def _refresh_live_workers_locked(self, now: float) -> bool:
        liveness = ownership.worker_liveness()
        workers = {worker_id: alive for worker_id, (alive, _) in liveness.items()}
        peers = [worker for worker, alive in workers.items() if alive and worker != self.worker_id]
        live = [self.worker_id] if workers.get(self.worker_id) else []
        for worker_id in peers:
            if liveness[worker_id][1] > 0:
                self._unsubscribed_since.pop(worker_id, None)
                live.append(worker_id)
                continue
            since = self._unsubscribed_since.setdefault(worker_id, now)
            if now - since < self.config.liveness_grace_s or not ownership.declare_dead(worker_id):
                live.append(worker_id)  # maybe reconnecting its subscriber (or it just did): not yet
                continue
            del self._unsubscribed_since[worker_id]
            workers[worker_id] = False
            log.warning("listeners_worker_dead", worker_id=worker_id, unsubscribed_s=round(now - since, 2))
        self._unsubscribed_since = {w: t for w, t in self._unsubscribed_since.items() if w in peers}
        previous, self._live_workers = self._live_workers, sorted(live) or [self.worker_id]
        # The state thread removes a dead worker's rows, then forgets it.
        with self._lock:
            self._dead_workers.update(w for w, alive in workers.items() if not alive and w != self.worker_id)
        return bool(set(previous) - set(self._live_workers))

    def _claim_unowned(self, now: float) -> None:
        online = presence.online_uids()
        online_set = set(online)
        with self._lock:
            owned = list(self.users)
        for uid in owned:
            if uid not in online_set and uid not in self._detach_at:
                self._schedule_reconcile(uid)
        candidates = [uid for uid in online if uid not in self.users]
        owners = ownership.owners(candidates)
        self._release_leases_of_gone_workers(owners)
        for uid in list(self._unowned_since):
            if owners.get(uid) is not None or uid not in online_set:
                del self._unowned_since[uid]
        due = []
        for uid, current_owner in owners.items():
            if current_owner is not None:
                continue
            preferred = ownership.preferred_worker(uid, self._live_workers) == self.worker_id
            if preferred or now - self._unowned_since.setdefault(uid, now) >= self.config.claim_delay_s:
                due.append(uid)
        self._claim_in_bulk(due)

    def _claim_in_bulk(self, uids: list[str]) -> None:
        """Claim many users (a dead peer's, or everyone at start) in two round trips, then attach each in its own
        queue: per user, that leaves only the listeners' own connections to open."""
        if len(uids) < 2:
            for uid in uids:
                self._schedule_reconcile(uid)
            return
        claimed = ownership.claim_many(uids, self.worker_id, self._ttl_ms)
        members = presence.live_members_many(claimed)
        offline = [uid for uid in claimed if not members.get(uid) and uid not in self.users]
        if offline:
            ownership.release(offline, self.worker_id)  # gone meanwhile: do not hold them until the lease expires
        now = time.monotonic()
        for uid in claimed:
            if members.get(uid):
                with self._lock:
                    self._claimed_ahead[uid] = (members[uid], now)
                self._schedule_reconcile(uid)

    def _release_leases_of_gone_workers(self, owners: dict[str, str | None]) -> None:
        """Leases held by a worker we do not count as live, which has no subscriber either, belong to a dead
        process: delete them (compare-and-delete, re-checking the subscription) so their users are claimed now.
        A worker that is only paused keeps its sockets and subscription: its leases are left to expire."""
        held: dict[str, list[str]] = {}
        for uid, current_owner in owners.items():
            if current_owner is not None and current_owner != self.worker_id \
                    and current_owner not in self._live_workers:
                held.setdefault(current_owner, []).append(uid)
        for worker_id, uids in held.items():
            released = ownership.release_if_gone(uids, worker_id)
            if released > 0:
                log.info("listener_leases_of_dead_worker_released", worker_id=worker_id, users=released)
            if released >= 0:
                owners.update(ownership.owners(uids))  # usually all None now; re-read, not assumed

    def _refresh_members(self) -> None:
        """Members can expire without an announcement (a dead gateway's chat sockets): re-read them for our users."""
        with self._lock:
            users = [user for user in self.users.values() if user.attached]
        if not users:
            return
        live = presence.live_members_many(user.uid for user in users)
        for user in users:
            members = set(live.get(user.uid, ()))
            if members != user.members or user.has_unresolved_chats:
                self._schedule_reconcile(user.uid)

    def _watchdog(self, now: float) -> None:
        with self._lock:
            users = list(self.users.values())
        for user in users:
            for kind, reason, stream in user.unhealthy(now):
                self._submit(user.uid, lambda user=user, kind=kind, reason=reason, stream=stream:
                             user.restart(kind, reason, stream))

    # --- ListenerState rows (the state thread) -----------------------------------------------------------------------
    def _write_states_forever(self) -> None:
        """The database thread: ListenerState rows, dead workers' rows, and expired registry sessions (the worker
        always runs, in the dev stack and in production, so it sweeps them; safe on every worker at once). A slow
        database delays only this thread, never a lease renewal."""
        next_session_sweep = 0.0
        try:
            while not self._stopping.wait(self.config.state_flush_s):
                try:
                    self._write_states()
                    self._forget_dead_workers()
                    if time.monotonic() >= next_session_sweep:
                        next_session_sweep = time.monotonic() + max(1.0, settings.LISTENERS_TTL_SECONDS / 6)
                        sweep_expired_sessions()
                except (redis.RedisError, OSError):
                    log.warning("listener_state_cleanup_failed")
                except DatabaseError:
                    log.warning("listener_state_database_failed")
        finally:
            connections.close_all()  # this thread's connections

    def _forget_dead_workers(self) -> None:
        with self._lock:
            dead, self._dead_workers = self._dead_workers, set()
        if not dead:
            return
        registered = ownership.registered_workers()
        for worker_id in dead:
            if registered.get(worker_id) is not False:
                continue  # back to life (it had only paused), or already forgotten by another worker
            if self._delete_all_states(worker_id):
                ownership.forget_worker(worker_id)
                log.warning("listeners_worker_gone", worker_id=worker_id)
            else:
                with self._lock:
                    self._dead_workers.add(worker_id)

    def _write_states(self) -> None:
        now = time.monotonic()
        with self._lock:
            users = list(self.users.values())
            pending_deletes = set(self._state_deletes)
        records, versions = [], {}
        for user in users:
            version, last_event_at = user.state_version, user.last_event_at
            written = self._written.get(user.uid)
            event_due = (written is not None and last_event_at != written[1]
                         and now - written[2] >= self.config.last_event_write_s)
            if written is None or written[0] != version or event_due:
                records.append(user.record())
                versions[user.uid] = (version, last_event_at, now)
        deletes = sorted(pending_deletes - set(versions))
        if not records and not deletes:
            return
        try:
            close_old_connections()
            services.save_listener_states(worker_id=self.worker_id, records=records)
            if deletes:
                services.delete_listener_states(worker_id=self.worker_id, uids=deletes)
        except DatabaseError:
            log.warning("listener_state_write_failed", rows=len(records), deletes=len(deletes))
            return
        self._written.update(versions)
        with self._lock:
            self._state_deletes.difference_update(deletes)
        for uid in deletes:
            self._written.pop(uid, None)

    def _delete_all_states(self, worker_id: str) -> bool:
        try:
            close_old_connections()
            services.delete_listener_states(worker_id=worker_id)
        except DatabaseError:
            log.warning("listener_state_cleanup_failed", worker_id=worker_id)
            return False
        return True

