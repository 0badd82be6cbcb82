"""Running a bound method under a deadline, and settling its outcome exactly once.

The work runs on a shared thread pool (sync methods: Firestore/RTDB calls block) or on one background event loop
(async methods). The caller waits until its deadline; if the work finishes later, the same settle step still stores
the eventual response under the idempotency key and publishes it to ``reply_to``, so a retry gets the result
instead of running the work twice.
"""
from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import structlog
from django.conf import settings

from listeners_project.metrics import RPC_CALLS, RPC_IN_FLIGHT, RPC_LATENCY

from .errors import Internal, RpcError, Unavailable
from .registry import MethodSpec

log = structlog.get_logger("rpc")

_pool: ThreadPoolExecutor | None = None
_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def _thread_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(max_workers=settings.RPC_WORKER_THREADS, thread_name_prefix="rpc")
    return _pool


def _async_loop() -> asyncio.AbstractEventLoop:
    global _loop
    if _loop is None:
        with _lock:
            if _loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="rpc-async", daemon=True).start()
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


def submit(spec: MethodSpec, call: Callable[[], Any]) -> Future:
    """Start the work now; the returned future completes with its result or exception."""
    context = contextvars.copy_context()  # carries trace_id into the worker thread / task
    if spec.is_async:
        return asyncio.run_coroutine_threadsafe(_in_context(context, call), _async_loop())
    return _thread_pool().submit(context.run, call)


async def _in_context(context: contextvars.Context, call: Callable[[], Any]) -> Any:
    # The coroutine object is created inside the copied context so its task inherits trace_id.
    coroutine = context.run(call)
    return await coroutine


class Execution:
    """One run of a method: observed by the waiting request and settled once when the work ends."""

    def __init__(self, spec: MethodSpec, on_settle: Callable[[Any, RpcError | None], None]) -> None:
        self.spec = spec
        self._on_settle = on_settle
        self._done = threading.Event()
        self._started = 0.0

    def start(self, call: Callable[[], Any]) -> None:
        self._started = time.perf_counter()
        RPC_IN_FLIGHT.inc()
        future = submit(self.spec, call)
        future.add_done_callback(self._settle)

    def wait(self, timeout_s: float) -> bool:
        return self._done.wait(timeout_s)

    def _settle(self, future: Future) -> None:
        RPC_IN_FLIGHT.dec()
        error: RpcError | None = None
        result: Any = None
        try:
            result = future.result()
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a typed error; the text stays in the log
            error = classify(exc)
            if not isinstance(exc, RpcError):
                log.error("rpc_method_failed", method=self.spec.full_name, code=error.code, exc_info=exc)
        elapsed = time.perf_counter() - self._started
        RPC_LATENCY.labels(self.spec.full_name).observe(elapsed)
        RPC_CALLS.labels(self.spec.full_name, error.code if error else "OK").inc()
        try:
            self._on_settle(result, error)
        finally:
            self._done.set()
