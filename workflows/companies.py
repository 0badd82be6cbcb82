"""The companies each user may see, read for many users at once for the notification and message syncs.

A sync is filtered by the user's companies (listeners/base.py ``authorized_companies``), read at each sync so that a
change applies to the next one. Read one user at a time on the per-user threads, a thousand users attaching cost two
thousand blocking Firestore reads and four thousand Redis round trips, and the attach bench spent most of those
threads' time waiting on them while other users' snapshots queued behind.

Here a sync asks and is called back. Requests that arrive while a read is under way are read together when it
returns (group commit): one Redis pipeline for the registrations and one Firestore batch get for the users whose
registrations name none, on a thread of the loop's executor (never on the loop, never on a user's thread). The two
kinds of one user share a read that started less than ``fresh_s`` ago: with ``fresh_s`` under the sync debounce's
quiet period, that read started after the change being synced, so it is as new as a read made for it.
"""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Callable

import redis
import structlog
from google.api_core.exceptions import GoogleAPICallError, RetryError

from firebase_data.listeners_registry import authorized_company_ids_many
from registry import selectors as registry_selectors

from .firestore_streams import EventLoopThread

log = structlog.get_logger(__name__)

Companies = set[str] | None  # None: no filter
# Called with (companies, available); available False: the read failed, nothing may be sent unfiltered.
CompaniesCallback = Callable[[Companies, bool], None]
_UNAVAILABLE = (redis.RedisError, OSError, GoogleAPICallError, RetryError)


def read_companies(uids: list[str]) -> dict[str, Companies]:
    """Each user's companies: the union over their live registrations, else the app's ``listeners_registry``
    document (the rule of listeners/base.py ``authorized_companies``), in three round trips for the lot."""
    registered = registry_selectors.authorized_companies_many(uids)
    missing = [uid for uid in uids if not registered.get(uid)]
    from_app = authorized_company_ids_many(missing) if missing else {}
    return {uid: set(registered.get(uid) or from_app.get(uid) or ()) or None for uid in uids}


class CompaniesReader:
    """Batched, non-blocking reads of ``read_companies``. ``request`` from any thread; the callback runs on the loop
    (or at once in the caller's thread, when a fresh read is shared): it only queues work."""

    def __init__(self, loop: EventLoopThread, *, fresh_s: float, batch: int = 1000,
                 read: Callable[[list[str]], dict[str, Companies]] = read_companies) -> None:
        self._loop = loop
        self._fresh_s = fresh_s
        self._batch = batch
        self._read = read
        self._lock = threading.Lock()
        self._waiting: dict[str, list[CompaniesCallback]] = {}  # uid -> callbacks, in request order
        self._reading = False  # a drain task runs; it takes every request made meanwhile
        self._recent: dict[str, tuple[float, Companies]] = {}  # uid -> (when its read started, companies)
        self.reads = 0  # batched reads done (tests and the bench count them)

    def request(self, uid: str, callback: CompaniesCallback) -> None:
        now = time.monotonic()
        with self._lock:
            recent = self._recent.get(uid)
            if recent is None or now - recent[0] >= self._fresh_s:
                self._waiting.setdefault(uid, []).append(callback)
                start, self._reading = not self._reading, True
                recent = None
        if recent is not None:
            callback(recent[1], True)
        elif start:
            self._loop.spawn(self._drain())

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                uids = list(self._waiting)[:self._batch]
                if not uids:
                    self._reading = False
                    self._forget_old(time.monotonic())
                    return
                callbacks = {uid: self._waiting.pop(uid) for uid in uids}
            started = time.monotonic()
            try:
                found, available = await loop.run_in_executor(None, self._read, uids), True
                self.reads += 1
            except _UNAVAILABLE as exc:
                log.warning("authorized_companies_unavailable", users=len(uids), error=type(exc).__name__)
                found, available = {}, False
            except Exception:  # a bug must not leave the syncs waiting for good: they are retried like a failure
                log.exception("authorized_companies_read_failed", users=len(uids))
                found, available = {}, False
            if available:
                with self._lock:
                    self._recent.update((uid, (started, found.get(uid))) for uid in uids)
            for uid, waiting in callbacks.items():
                for callback in waiting:
                    callback(found.get(uid), available)

    def _forget_old(self, now: float) -> None:
        """Under the lock: drop reads too old to be shared (the map stays as small as the last burst)."""
        self._recent = {uid: entry for uid, entry in self._recent.items() if now - entry[0] < self._fresh_s}
