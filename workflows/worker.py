"""The listeners worker: follows presence, owns users through Redis leases, and keeps their listeners healthy.

``ListenersWorker`` only builds the parts, wires them and starts and stops their threads (a fixed handful,
whatever the number of users):

* the event loop (every Firestore and Realtime DB stream, and every timer) and the per-user queue threads (actors.py), which run
  every user's reconcile and listeners (users.py, user_listeners.py, listeners/);
* the subscriber (subscriber.py): presence events, worker changes and this worker's control channel, whose
  subscription is also this worker's liveness (ownership.py);
* the liveness thread (liveness.py), which polls the peers' subscriptions and declares a dead one so;
* the maintainer (maintainer.py), which every tick (and at once after a death) heart-beats the worker, renews its
  leases and claims online users nobody alive owns (leases.py), and runs the watchdog;
* the database thread (state_mirror.py), which writes ListenerState rows (a slow database never delays a lease
  renewal) and sweeps expired sessions (session_sweep.py).
"""
from __future__ import annotations

import threading
import time
from typing import Callable

import structlog

from . import ownership
from .actors import KeyedSerialExecutor
from .companies import CompaniesReader
from .config import ListenersConfig
from .firestore_streams import EventLoopThread, ListenChannelPool
from .leases import LeaseKeeper
from .listeners.base import ListenerContext
from .listeners.jobs import WORKFLOW
from .liveness import PeerLiveness
from .maintainer import Maintainer, Stats
from .rtdb_streams import RtdbStreamPools
from .session_sweep import SessionSweep
from .state_mirror import StateMirror
from .subscriber import Subscriber
from .user_listeners import UserListeners
from .users import OwnedUsers

log = structlog.get_logger(__name__)


class ListenersWorker:
    """One worker process's listeners (``manage.py run_listeners``; tests run several in-process)."""

    def __init__(self, config: ListenersConfig) -> None:
        self.config = config
        self.worker_id = config.worker_id
        self._stopping = threading.Event()
        self._wake = threading.Event()  # the maintainer ticks now: a peer died (claim its users), we resubscribed
        self._threads: list[threading.Thread] = []  # liveness, maintainer and database thread

    @property
    def users(self) -> dict[str, UserListeners]:
        """The users this worker owns (attached, or parked by staff)."""
        return self._owned.users

    @property
    def attach_count(self) -> int:
        """Attaches performed since start (tests count them)."""
        return self._owned.attach_count

    def trigger(self, uid: str) -> None:
        """A presence change for ``uid`` (thread-safe): reconcile it if we own it or are its preferred worker."""
        self._owned.trigger(uid)

    def _on_presence(self, uid: str) -> None:
        """A presence announcement: reconcile ``uid`` if it is ours to, and have the claims check it (leases.py)."""
        self._owned.trigger(uid)
        self._leases.announced(uid)

    # --- lifecycle ----------------------------------------------------------------------------------------------------
    def start(self) -> "ListenersWorker":
        self.loop = EventLoopThread()
        self.executor = KeyedSerialExecutor(self.config.threads)
        self.channels = ListenChannelPool(self.loop, self.config.streams_per_connection, self.config.max_opening,
                                          self.config.targets_per_stream, self.config.stall_s)
        self.rtdb = self.loop.run(RtdbStreamPools.create())
        # A read shared by both kinds of a user must have started after the change being synced (companies.py).
        companies = CompaniesReader(self.loop, fresh_s=self.config.sync_quiet_s / 2)
        ctx = ListenerContext(self.config, self.executor, self.loop, self.channels, self.rtdb, companies)
        self._mirror = StateMirror(self.config)
        self._peers = PeerLiveness(self.config, on_left=self._wake.set, on_dead=self._mirror.workers_dead)
        self._leases = LeaseKeeper(self.config, self._peers)
        self._owned = OwnedUsers(ctx, self._peers, self._mirror, on_attached=self._leases.attached)
        maintainer = Maintainer(self.config, self._owned, self._leases, heartbeat=self._heartbeat, wake=self._wake)
        self._subscriber = Subscriber(
            self.worker_id, on_presence=self._on_presence, on_workers_changed=self._peers.refresh_now,
            on_control=self._owned.control, on_subscribed=maintainer.resubscribed, stopping=self._stopping,
        )
        # Subscribe before registering: from its first heartbeat on, peers take a worker without a subscription on
        # its control channel for dead.
        if not self._subscriber.start(10):
            log.warning("listeners_subscriber_not_ready")  # registered anyway; peers' grace, then its retries
        self._heartbeat()
        self._peers.refresh(time.monotonic())
        self._subscriber.registered.set()
        sweep = SessionSweep()
        self._start_thread("listeners-liveness", self._peers.watch_forever)
        self._start_thread("listeners-maintainer", maintainer.run_forever)
        self._start_thread("listeners-state",
                           lambda stopping: self._mirror.run_forever(stopping, self._owned.snapshot, sweep.run_if_due))
        log.info("listeners_worker_started", worker_id=self.worker_id, lease_ttl_s=self.config.lease_ttl_s)
        return self

    def _start_thread(self, name: str, run: Callable[[threading.Event], None]) -> None:
        thread = threading.Thread(target=run, args=(self._stopping,), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Detach everyone, hand the users back (released leases: another worker claims them at once), deregister.
        The subscription goes last: while it lasts, peers do not take this worker's users (no duplicate events)."""
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=timeout_s)
        uids = self._owned.owned_uids()
        for uid in uids:
            self._owned.drop_later(uid, "worker_stopping")
        self.executor.wait_idle(timeout_s)
        ownership.release(uids, self.worker_id)
        ownership.forget_worker(self.worker_id)
        self._mirror.delete_all(self.worker_id)
        self._subscriber.stop(timeout_s)
        self.executor.stop()
        self.channels.close()
        self.loop.run(self.rtdb.aclose())
        self.loop.stop()
        log.info("listeners_worker_stopped", worker_id=self.worker_id, users=len(uids))

    # --- counts and registration ------------------------------------------------------------------------------------
    def stats(self) -> Stats:
        # One pass over the users: the counts are published every tick, and ten times a second while users attach
        # (maintainer.py), where four passes were the maintainer's largest cost.
        users = workflow_users = cache_entries = ready = 0
        for user in self._owned.snapshot():
            if not user.attached:
                continue
            users += 1
            jobs = user.listeners.get(WORKFLOW)  # one read: attach() and detach() replace the dict whole
            if jobs is not None:
                workflow_users += 1
                cache_entries += len(jobs.cache)
            ready += user.ready
        targets = self.channels.queries_per_channel()
        streams = self.channels.listen_streams_per_channel()
        return {
            "users": users,
            "workflow_users": workflow_users,
            "workflow_cache_entries": cache_entries,
            "ready_users": ready,
            "firestore_connections": len(streams),
            "firestore_targets": sum(targets),
            "firestore_streams": sum(streams),
            "max_streams_per_connection": max(streams, default=0),
            "heartbeat_at": time.time(),
        }

    def _heartbeat(self) -> Stats:
        """Publish our counts and stay registered (ownership.heartbeat)."""
        stats = self.stats()
        if ownership.heartbeat(self.worker_id, stats, self.config.lease_ttl_ms):
            self._mirror.rewrite_all()  # we had been taken for dead (a long pause) and our rows removed
        return stats
