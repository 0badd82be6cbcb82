"""The listeners worker: follows presence, owns users through Redis leases, and keeps their listeners healthy.

Threads (a fixed handful, whatever the number of users): the event loop (every Firestore stream and every timer),
the per-user queue threads (actors.py), one Redis subscriber (``presence:events`` and this worker's control
channel), the maintainer, which every tick heart-beats the worker, renews its leases, claims online users nobody
owns and runs the watchdog, and the state thread, which writes ListenerState rows (a slow database never delays
a lease renewal). Each Realtime DB listener adds the SDK's own thread.

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

from listeners_project.adapters.redis import new_sync_subscriber
from realtime import presence
from registry.services import sweep_expired_sessions

from . import ownership, services
from .actors import KeyedSerialExecutor
from .config import ListenersConfig
from .firestore_streams import EventLoopThread, ListenChannelPool
from .user_listeners import WORKFLOW, ListenerContext, UserListeners

log = structlog.get_logger(__name__)


class ListenersWorker:
    def __init__(self, config: ListenersConfig) -> None:
        self.config = config
        self.worker_id = config.worker_id
        self.users: dict[str, UserListeners] = {}  # the users this worker owns (attached, or parked by staff)
        self.attach_count = 0  # attaches performed since start (tests count them)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._detach_at: dict[str, float] = {}  # uid -> when its grace period ends
        self._unowned_since: dict[str, float] = {}
        self._live_workers: list[str] = [self.worker_id]
        self._written: dict[str, tuple[int, object, float]] = {}  # uid -> (state version, last_event_at, written at)
        self._state_deletes: set[str] = set()
        self._dead_workers: set[str] = set()
        self._resubscribed = threading.Event()
        self._queued: dict[str, bool] = {}  # uid -> reconcile waiting in its queue (and whether presence changed)
        self._threads: list[threading.Thread] = []

    @property
    def _ttl_ms(self) -> int:
        return int(self.config.lease_ttl_s * 1000)

    # --- lifecycle ----------------------------------------------------------------------------------------------------
    def start(self) -> "ListenersWorker":
        self.loop = EventLoopThread()
        self.executor = KeyedSerialExecutor(self.config.threads)
        self.channels = ListenChannelPool(self.loop, self.config.streams_per_connection)
        self.ctx = ListenerContext(self.config, self.executor, self.loop, self.channels)
        ownership.heartbeat(self.worker_id, self.stats(), self._ttl_ms)
        self._refresh_live_workers()
        for name, target in (("listeners-subscriber", self._subscribe_forever),
                             ("listeners-maintainer", self._maintain_forever),
                             ("listeners-state", self._write_states_forever)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("listeners_worker_started", worker_id=self.worker_id, lease_ttl_s=self.config.lease_ttl_s)
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Detach everyone, hand the users back (released leases: another worker claims them at once), deregister."""
        self._stopping.set()
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
        members = presence.live_members(uid)
        user = self.users.get(uid)
        if user is None:
            if members and ownership.claim(uid, self.worker_id, self._ttl_ms):
                user = UserListeners(uid, self.ctx)
                with self._lock:
                    self.users[uid] = user
                    self._state_deletes.discard(uid)
                self._unowned_since.pop(uid, None)
                self.attach_count += 1
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
        while not self._stopping.is_set():
            pubsub = new_sync_subscriber().pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(presence.EVENTS_CHANNEL, control)
                self._resubscribed.set()  # events may have been missed meanwhile: the maintainer reconciles all
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None:
                        delay = 0.1
                        self._on_message(message["channel"].decode(), message["data"])
            except (redis.RedisError, OSError):
                log.warning("listeners_subscriber_reconnecting", retry_in_s=delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, 5.0)
            finally:
                pubsub.close()

    def _on_message(self, channel: str, data: bytes) -> None:
        if channel == presence.EVENTS_CHANNEL:
            uid = presence.parse_event(data).get("uid")
            if isinstance(uid, str) and uid:
                self.trigger(uid)
            return
        command = ownership.parse_control(data)
        if command is not None:
            action, uid = command
            self._submit(uid, lambda: self._on_control(action, uid))

    # --- maintainer ---------------------------------------------------------------------------------------------------
    def _maintain_forever(self) -> None:
        next_renew = next_members = next_session_sweep = 0.0
        while not self._stopping.wait(self.config.tick_s):
            now = time.monotonic()
            try:
                if ownership.heartbeat(self.worker_id, self.stats(), self._ttl_ms):
                    # We had been taken for dead (a long pause) and our rows removed: write them all again.
                    self._written.clear()
                if now >= next_renew:
                    next_renew = now + self.config.lease_ttl_s / 3
                    self._renew_leases()
                self._refresh_live_workers()
                self._claim_unowned(now)
                if now >= next_members or self._resubscribed.is_set():
                    next_members = now + self.config.members_refresh_s
                    self._resubscribed.clear()
                    self._refresh_members()
                self._watchdog(now)
                if now >= next_session_sweep:
                    # The worker always runs (dev stack and production), so it expires registry sessions past their
                    # TTL; safe on every worker at once.
                    next_session_sweep = now + max(1.0, settings.LISTENERS_TTL_SECONDS / 6)
                    sweep_expired_sessions()
            except (redis.RedisError, OSError, DatabaseError):
                log.warning("listeners_maintenance_failed")
            except Exception:  # a bug here must not stop lease renewal for good; it is logged
                log.exception("listeners_maintenance_crashed")

    def _renew_leases(self) -> None:
        with self._lock:
            uids = list(self.users)
        for uid in ownership.renew(uids, self.worker_id, self._ttl_ms):
            log.warning("listener_lease_lost", uid=uid)
            self._submit(uid, lambda uid=uid: self._drop_user(uid, "lease_lost", release=False))

    def _refresh_live_workers(self) -> None:
        workers = ownership.registered_workers()
        self._live_workers = sorted(worker for worker, alive in workers.items() if alive) or [self.worker_id]
        # A dead worker's leases expire with it and its users get claimed; the state thread removes its rows.
        with self._lock:
            self._dead_workers.update(w for w, alive in workers.items() if not alive and w != self.worker_id)

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
        for uid in list(self._unowned_since):
            if owners.get(uid) is not None or uid not in online_set:
                del self._unowned_since[uid]
        for uid, current_owner in owners.items():
            if current_owner is not None:
                continue
            preferred = ownership.preferred_worker(uid, self._live_workers) == self.worker_id
            if preferred or now - self._unowned_since.setdefault(uid, now) >= self.config.claim_delay_s:
                self._schedule_reconcile(uid)

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
        try:
            while not self._stopping.wait(self.config.state_flush_s):
                try:
                    self._write_states()
                    self._forget_dead_workers()
                except (redis.RedisError, OSError):
                    log.warning("listener_state_cleanup_failed")
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

