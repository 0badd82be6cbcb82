"""Firestore query listeners that share one event loop, spread over pooled connections (≤ N streams each).

``ListenStream`` reuses the SDK's ``Watch`` for everything about the protocol (targets, resume tokens, resets, the
snapshot and its ADDED/MODIFIED/REMOVED changes) and replaces only its transport: instead of two threads per watch,
a task on the worker's loop reads the ``Listen`` stream (see core/integrations/firestore_listen.py for why).

Recoverable stream errors (the SDK's list: UNAVAILABLE, INTERNAL, ...) reconnect with backoff and the resume token,
which is how an emulator or backend restart is survived. Anything else leaves ``failure`` set for the watchdog.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Coroutine, TypeVar

import grpc
import structlog
from google.api_core import exceptions as gexc
from google.cloud.firestore_v1 import DocumentSnapshot
from google.cloud.firestore_v1.types import TargetChange
from google.cloud.firestore_v1.watch import Watch

from core.integrations.firestore_listen import new_listen_api

log = structlog.get_logger(__name__)
T = TypeVar("T")

_RECOVERABLE = (
    gexc.Aborted, gexc.Cancelled, gexc.Unknown, gexc.DeadlineExceeded, gexc.ResourceExhausted,
    gexc.InternalServerError, gexc.ServiceUnavailable, gexc.Unauthenticated,
)
_BACKOFF_FIRST_S, _BACKOFF_MAX_S = 0.25, 10.0
_NO_CHANGE = TargetChange.TargetChangeType.NO_CHANGE
# Streams waiting for their first snapshot at once. Opened all at once, a thousand users' queries held every first
# snapshot back until nearly all were answered (the emulator answered none for 10 s at 1,000 users, bench/listeners.py);
# with a bound they are answered as they come, and a stream waits only for a place.
DEFAULT_MAX_OPENING = 64


class EventLoopThread:
    """The worker's asyncio loop on a daemon thread: Firestore streams and timers live here."""

    def __init__(self, name: str = "listeners-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on the loop and wait for it (never call this from the loop itself)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def call_soon(self, callback: Callable[[], Any]) -> None:
        self.loop.call_soon_threadsafe(callback)

    def call_later(self, delay_s: float, callback: Callable[[], Any]) -> None:
        self.loop.call_soon_threadsafe(self.loop.call_later, max(0.0, delay_s), callback)

    def stop(self) -> None:
        async def cancel_all() -> None:
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive():
            self.run(cancel_all(), timeout=10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)


@dataclass(eq=False)
class ListenChannel:
    index: int
    api: Any  # FirestoreAsyncClient
    streams: int = 0


class ListenChannelPool:
    """Connections for the Listen streams: each one carries at most ``max_streams`` (Firestore serves ~100).

    A stream takes its connection on the loop, when its task starts (``acquire``): opening a stream never waits for
    the loop, so a thousand users attach without their threads queueing behind one another for a new connection
    (the attach bench spent a third of the per-user threads' time there when the connection was taken in ``open``).
    """

    def __init__(self, loop: EventLoopThread, max_streams: int, max_opening: int = DEFAULT_MAX_OPENING) -> None:
        self._loop = loop
        self.max_streams = max_streams
        self._channels: list[ListenChannel] = []
        self._lock = threading.Lock()  # stream counts: taken on the loop (acquire) and by any thread (release)
        self._max_opening = max_opening
        self._opening: asyncio.Semaphore | None = None  # made on the loop (opening_slot)

    def acquire(self, stream: "ListenStream") -> ListenChannel | None:
        """On the loop: a connection with room for ``stream`` (a new one when all are full), or None when the stream
        was closed before its task started."""
        with self._lock:
            if stream._stopped:
                return None
            # Fill the existing connections first: fewer connections, each well under the server's limit.
            channel = next((c for c in self._channels if c.streams < self.max_streams), None)
            if channel is None:
                channel = ListenChannel(len(self._channels), new_listen_api())  # no I/O until its first call
                self._channels.append(channel)
            channel.streams += 1
            stream.channel = channel
            return channel

    async def opening_slot(self) -> None:
        """On the loop: wait for one of the ``max_opening`` places of streams waiting for their first snapshot;
        ``opened`` gives it back."""
        if self._opening is None:
            self._opening = asyncio.Semaphore(self._max_opening)
        await self._opening.acquire()

    def opened(self) -> None:
        """On the loop: a stream holding an opening place got its first snapshot, or stopped."""
        assert self._opening is not None
        self._opening.release()

    def release(self, stream: "ListenStream") -> None:
        """Any thread, once the stream is stopped: its place on its connection (if it had taken one) is free."""
        with self._lock:
            channel, stream.channel = stream.channel, None
            if channel is not None:
                channel.streams -= 1

    def streams_per_channel(self) -> list[int]:
        with self._lock:
            return [channel.streams for channel in self._channels]

    def close(self) -> None:
        with self._lock:
            channels, self._channels = self._channels, []
        for channel in channels:
            self._loop.run(channel.api.transport.close())


class _ResetStream(Exception):
    """The server's document count disagrees with ours: start over without a resume token (as the SDK does)."""


class ListenStream(Watch):
    """One Firestore query listener. ``callback(stream, docs, changes, read_time)`` runs on the loop: keep it short."""

    _pool: ListenChannelPool
    _loop_thread: EventLoopThread

    @classmethod
    def open(cls, query: Any, callback: Callable[..., None], *, pool: ListenChannelPool,
             loop: EventLoopThread) -> "ListenStream":
        stream = cls.for_query(query, None, DocumentSnapshot)  # builds the target; _init_stream is ours
        stream._snapshot_callback = functools.partial(stream._deliver, callback)
        stream._pool, stream._loop_thread = pool, loop
        stream.channel = None  # taken on the loop, when the task starts (ListenChannelPool.acquire)
        stream.last_message_at = time.monotonic()
        stream.heartbeats_seen = False
        stream._quiet_since_no_change = False
        stream._error = None
        stream._stopped = False
        stream._opening = False  # holds one of the pool's opening places (until its first snapshot)
        stream._task = loop.spawn(stream._listen_forever())
        return stream

    def _deliver(self, callback: Callable[..., None], *snapshot: Any) -> None:
        self._first_snapshot_done()
        callback(self, *snapshot)

    def _init_stream(self) -> None:
        """The SDK would start its threads here; ``open`` starts a loop task instead."""

    @property
    def is_active(self) -> bool:
        return not self._stopped and self._error is None

    @property
    def failure(self) -> str | None:
        if self._error is not None:
            return self._error
        return "closed" if self._stopped else None

    def stalled(self, now: float, stall_s: float) -> bool:
        """Silent past ``stall_s`` although the server heart-beats this stream (Firestore sends NO_CHANGE about every
        30 s; the emulator sends none, so an idle emulator stream is never taken for a stalled one)."""
        return self.heartbeats_seen and now - self.last_message_at > stall_s

    def close(self, reason: Any = None) -> None:
        if self._stopped:
            return
        self._stopped = True
        if reason is not None and self._error is None:
            self._error = "error"
            log.warning("firestore_stream_closed_by_sdk", reason=type(reason).__name__)
        self._pool.release(self)
        self._task.cancel()

    def on_snapshot(self, proto: Any) -> None:
        if proto is None:
            return
        self.last_message_at = time.monotonic()
        pb = proto._pb
        which = pb.WhichOneof("response_type")
        change = pb.target_change
        if which == "target_change" and change.target_change_type == _NO_CHANGE and not change.target_ids:
            # Two consistency markers in a row, with nothing in between: the server heart-beats this stream.
            self.heartbeats_seen = self.heartbeats_seen or self._quiet_since_no_change
            self._quiet_since_no_change = True
        else:
            self._quiet_since_no_change = False
        if which == "filter" and pb.filter.count != self._current_size():
            self._reset_docs()
            raise _ResetStream
        super().on_snapshot(proto)

    async def _listen_forever(self) -> None:
        channel = self._pool.acquire(self)
        if channel is None:
            return  # closed before it started
        await self._pool.opening_slot()
        self._opening = True
        try:
            await self._listen_with_retries(channel)
        finally:
            self._first_snapshot_done()

    def _first_snapshot_done(self) -> None:
        if self._opening:
            self._opening = False
            self._pool.opened()

    async def _listen_with_retries(self, channel: ListenChannel) -> None:
        delay = _BACKOFF_FIRST_S
        while not self._stopped:
            try:
                if await self._listen_once(channel):
                    delay = _BACKOFF_FIRST_S
                    continue  # the server ended a stream that worked: resume at once
            except _ResetStream:
                continue
            except (gexc.GoogleAPICallError, grpc.aio.AioRpcError) as exc:
                error = gexc.from_grpc_error(exc) if isinstance(exc, grpc.aio.AioRpcError) else exc
                if not isinstance(error, _RECOVERABLE):
                    self._fail(error)
                    return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a protocol surprise (target removed...): the watchdog replaces us
                self._fail(exc, traceback=True)
                return
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, _BACKOFF_MAX_S)

    async def _listen_once(self, channel: ListenChannel) -> bool:
        """One Listen call until the server ends it; True if it delivered anything (the backoff then restarts)."""
        call = await channel.api.listen(
            requests=_requests(self._get_rpc_request()), metadata=self._firestore._rpc_metadata, retry=None,
            timeout=None,
        )
        delivered = False
        try:
            async for response in call:
                delivered = True
                self.on_snapshot(response)
        finally:
            call.cancel()
        return delivered

    def _fail(self, error: BaseException, *, traceback: bool = False) -> None:
        self._error = "error"
        log.warning("firestore_stream_failed", error=type(error).__name__, exc_info=error if traceback else None)


async def _requests(first: Any) -> Any:
    yield first
    await asyncio.Event().wait()  # keep the request side open; cancelled with the call
