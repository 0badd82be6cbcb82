"""Running a bound method: sync methods on a shared thread pool, async ones as tasks on the caller's event loop.

A run is independent of the request that started it: the request waits until its deadline and then answers TIMEOUT,
while the run goes on and its outcome is still settled (stored under the idempotency key, published to
``reply_to``). Python cannot interrupt a running thread, so the one thing a deadline can still prevent is a start:
a run still queued for a worker thread when its caller gives up is abandoned and never executes.

``rpc_loop()`` is a long-lived event loop on a daemon thread, for callers that are not on an event loop themselves
(the Django view behind the test client and the sync ASGI fallback): runs that outlive their request need a loop
that outlives it too.
"""
from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import structlog
from django.conf import settings
from django.db import connections

from core.metrics import RPC_IN_FLIGHT

from core.errors import Internal, RpcError, Unavailable
from .registry import MethodSpec

log = structlog.get_logger("rpc")


class WorkerThreads:
    """The threads that run sync method bodies, handing each result straight to the caller's event loop.

    ``loop.run_in_executor`` with a ThreadPoolExecutor wraps every call in a concurrent Future (its own Condition and
    RLock) chained to an asyncio future; profiled at thousands of no-op calls per second that bookkeeping was about
    40 % of the gateway's own cost per call. Here a call is one queue item and one ``call_soon_threadsafe``.
    Threads start on demand up to ``max_workers`` (each submitted call reserves an idle thread or starts one) and
    then stay; beyond the maximum, calls wait in the queue.
    """

    def __init__(self, max_workers: int, name: str = "rpc") -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._max_workers = max_workers
        self._threads = 0
        self._idle = 0  # idle threads not yet reserved by a submitted call
        self._name = name

    def run(self, func: Callable[..., Any], *args: Any) -> asyncio.Future:
        """Run ``func(*args)`` on a worker thread; the returned future belongs to the running loop."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            if self._idle:
                self._idle -= 1
                start = False
            else:
                start = self._threads < self._max_workers
                self._threads += start
        self._queue.put((loop, future, func, args))
        if start:
            threading.Thread(target=self._work, name=f"{self._name}-{self._threads}", daemon=True).start()
        return future

    def _work(self) -> None:
        while True:
            loop, future, func, args = self._queue.get()
            try:
                setter, value = _set_result, func(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine, which classifies it
                setter, value = _set_exception, exc
            with self._lock:  # idle before the caller can see the result and submit its next call
                self._idle += 1
            _deliver(loop, future, setter, value)
            del loop, future, func, args, setter, value  # hold nothing of a finished call while waiting


def _deliver(loop: asyncio.AbstractEventLoop, future: asyncio.Future, setter: Callable, value: Any) -> None:
    try:
        loop.call_soon_threadsafe(setter, future, value)
    except RuntimeError:
        pass  # that loop has been closed (process shutting down): nobody is waiting for this result any more


def _set_result(future: asyncio.Future, value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def release_db_connections() -> None:
    """After a method body, on its worker thread: what Django does at the end of a request.

    Worker threads live as long as the process, so without this a connection would never be closed: past
    CONN_MAX_AGE (at once with the default 0) or after a database error (e.g. the server restarted), it would be
    reused by every later call on that thread. Unlike close_old_connections() it never talks to the database (that
    one asks a connection for its autocommit state first, which can reopen it).
    """
    for connection in connections.all(initialized_only=True):
        # DEBUG's query log is reset by Django's request_started signal, which the fast path never sends: without
        # this each of the RPC_WORKER_THREADS connections kept its last 9,000 queries (issue 21's memory growth).
        connection.queries_log.clear()
        if connection.connection is None or connection.in_atomic_block:
            continue
        expired = connection.close_at is not None and time.monotonic() >= connection.close_at
        if expired or connection.errors_occurred:
            connection.close()


_workers: WorkerThreads | None = None
_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def worker_threads() -> WorkerThreads:
    global _workers
    if _workers is None:
        with _lock:
            if _workers is None:
                _workers = WorkerThreads(settings.RPC_WORKER_THREADS)
    return _workers


def rpc_loop() -> asyncio.AbstractEventLoop:
    global _loop
    if _loop is None:
        with _lock:
            if _loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="rpc-loop", daemon=True).start()
                _loop = loop
    return _loop


def classify(exc: BaseException) -> RpcError:
    """Map an exception escaping business code to a typed error; never expose its text."""
    if isinstance(exc, RpcError):
        return exc
    if _is_unavailable(exc):
        return Unavailable()
    return Internal()


def _is_unavailable(exc: BaseException) -> bool:
    import redis
    from firebase_admin import exceptions as fb_exc
    from google.api_core import exceptions as gexc

    unavailable = (
        gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.RetryError, gexc.InternalServerError,
        redis.ConnectionError, redis.TimeoutError, fb_exc.UnavailableError, fb_exc.DeadlineExceededError,
        ConnectionError, TimeoutError,
    )
    return isinstance(exc, unavailable)


class NotStarted(Exception):
    """The caller's deadline passed while the run was still queued: it was abandoned before doing anything."""


class _StartGuard:
    """Decides, once and under a lock, whether a run starts or is abandoned (worker thread vs event loop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = False
        self._abandoned = False

    def begin(self) -> bool:
        with self._lock:
            if not self._abandoned:
                self._started = True
            return self._started

    def abandon(self) -> bool:
        with self._lock:
            if not self._started:
                self._abandoned = True
            return self._abandoned


@dataclass(frozen=True)
class Outcome:
    result: Any = None
    error: RpcError | None = None
    started: bool = True


class Run:
    """One execution of ``spec`` with bound arguments, started at once; ``outcome()`` never raises."""

    def __init__(self, spec: MethodSpec, args: tuple, kwargs: dict[str, Any]) -> None:
        self.spec = spec
        self._guard = _StartGuard()
        if spec.is_async:
            # Runs inside the task that awaits outcome(), which inherits trace_id and the structlog context.
            self._work: Any = self._run_async(args, kwargs)
        else:
            context = contextvars.copy_context()  # carries trace_id and the structlog context into the thread
            self._work = worker_threads().run(context.run, self._run_sync, args, kwargs)

    def abandon_if_not_started(self) -> bool:
        """True when the run had not started and now never will."""
        return self._guard.abandon()

    def _run_sync(self, args: tuple, kwargs: dict[str, Any]) -> Any:
        if not self._guard.begin():
            raise NotStarted
        RPC_IN_FLIGHT.inc()
        try:
            return self.spec.func(*args, **kwargs)
        finally:
            release_db_connections()
            RPC_IN_FLIGHT.dec()

    async def _run_async(self, args: tuple, kwargs: dict[str, Any]) -> Any:
        if not self._guard.begin():
            raise NotStarted
        RPC_IN_FLIGHT.inc()
        try:
            return await self.spec.func(*args, **kwargs)
        finally:
            RPC_IN_FLIGHT.dec()

    async def outcome(self) -> Outcome:
        """Await the work (once): its result, its failure as a typed error, or that it never started."""
        try:
            return Outcome(result=await self._work)
        except NotStarted:
            return Outcome(started=False)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a typed error; the text stays in the log
            if isinstance(exc, asyncio.CancelledError) and asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise  # the loop itself is shutting down: not the method's failure
            error = classify(exc)
            if not isinstance(exc, RpcError):
                log.error("rpc_method_failed", method=self.spec.full_name, code=error.code, exc_info=exc)
            return Outcome(error=error)
