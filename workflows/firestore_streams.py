"""Firestore query listeners on the worker's event loop: many queries share one ``Listen`` stream, and many streams
share one pooled connection.

The ``Listen`` protocol carries any number of targets on one bidirectional stream: ``add_target`` / ``remove_target``
with our own ``target_id``, every TargetChange and document change names the targets it concerns, and a NO_CHANGE
without target ids, with a read time, marks a consistent point for every CURRENT target. So a ``SharedListen`` holds
up to ``targets_per_stream`` queries (``ListenTarget``, firestore_targets.py) of any users, routes each response to
the targets it names, and on reconnect adds every target again with its own resume token. Measured on the emulator
(README, "Listeners worker"): its cost is per target rather than per stream, but 2,000 queries on 20 streams reach
their first snapshots in ~40 % less time than on 2,000 streams, with half the worker's CPU.

Recoverable stream errors (the SDK's list: UNAVAILABLE, INTERNAL, ...) reconnect with backoff, which is how an
emulator or backend restart is survived. Anything else fails every target of the stream, for the watchdog.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import random
import threading
import time
from collections import deque
from typing import Any, Callable, Coroutine, TypeVar

import grpc
import structlog
from google.api_core import exceptions as gexc
from google.cloud.firestore_v1.types import ListenRequest, TargetChange

from core.integrations.firestore_listen import new_listen_api

log = structlog.get_logger(__name__)
T = TypeVar("T")
# A query listener (firestore_targets.py ``ListenTarget``, which builds on this module: not imported back).
ListenTarget = Any

_RECOVERABLE = (
    gexc.Aborted, gexc.Cancelled, gexc.Unknown, gexc.DeadlineExceeded, gexc.ResourceExhausted,
    gexc.InternalServerError, gexc.ServiceUnavailable, gexc.Unauthenticated,
)
_BACKOFF_FIRST_S, _BACKOFF_MAX_S = 0.25, 10.0
# The SDK's call waits for the server's first headers, without a deadline: seen to hang after a cancelled call's
# read was cut mid-message (tests/workflows/test_shared_listen.py, under load). A hundred queries wait on one call.
_CALL_OPEN_TIMEOUT_S = 10.0
# Plain ints: the raw protobuf gives ints, and comparing one with proto-plus's enum runs the enum's Python __eq__.
_NO_CHANGE = int(TargetChange.TargetChangeType.NO_CHANGE)
_REMOVE = int(TargetChange.TargetChangeType.REMOVE)
# Targets waiting for their first snapshot at once. One query per stream, a thousand users' queries opened at once held
# every first snapshot back until nearly all were answered, so a bound of 64 let them be answered as they came. As
# targets of shared streams they are answered in bulk, and trickling them in costs the emulator more: 2,000 queries
# took 6.4-8.4 emulator CPU-s added at once and 8.0-11.0 s with 64 at a time (README, "Listeners worker"). The bound
# stays, high, so that a restart's ten thousand queries do not all wait on the server at once.
DEFAULT_MAX_OPENING = 1000
DEFAULT_TARGETS_PER_STREAM = 100


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


class ListenChannel:
    """One connection and the shared streams it carries (at most the pool's ``max_streams``)."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.api = new_listen_api()  # no I/O until its first call
        self.streams: list[SharedListen] = []
        self.targets = 0  # query listeners on its streams, counted by any thread (the pool's lock)


class ListenChannelPool:
    """Where query listeners go: a shared stream with room (``targets_per_stream``) on a connection with room
    (``max_streams``, Firestore serves ~100 streams per connection), new ones when all are full.

    Placement runs on the loop, so opening a listener never waits for a connection: a thousand users attach without
    their threads queueing behind one another. At most ``max_opening`` targets wait for their first snapshot at once;
    the others wait for a place in ``_waiting``.
    """

    def __init__(self, loop: EventLoopThread, max_streams: int, max_opening: int = DEFAULT_MAX_OPENING,
                 targets_per_stream: int = DEFAULT_TARGETS_PER_STREAM, stall_s: float = 120.0) -> None:
        self._loop = loop
        self.max_streams = max_streams
        self.targets_per_stream = targets_per_stream
        self.stall_s = stall_s
        self._channels: list[ListenChannel] = []
        self._lock = threading.Lock()  # target counts: placed on the loop, released by any thread
        self._max_opening = max_opening
        self._opening = 0  # on the loop
        self._waiting: deque[ListenTarget] = deque()  # on the loop
        self._filling: SharedListen | None = None  # the stream the last target went to (under the lock)

    # --- on any thread ------------------------------------------------------------------------------------------------
    def add(self, target: ListenTarget) -> None:
        self._loop.call_soon(lambda: self._admit(target))

    def release(self, target: ListenTarget) -> None:
        """The target is stopped: its place is free now (counts are exact at once), its stream learns it on the loop."""
        with self._lock:
            channel, target.channel = target.channel, None
            if channel is not None:
                channel.targets -= 1
        self._loop.call_soon(lambda: self._remove(target))

    def queries_per_channel(self) -> list[int]:
        """The query listeners (targets) each connection carries: a user's open Firestore listeners."""
        with self._lock:
            return [channel.targets for channel in self._channels]

    def listen_streams_per_channel(self) -> list[int]:
        """The ``Listen`` streams each connection carries now."""
        with self._lock:
            return [len(channel.streams) for channel in self._channels]

    def close(self) -> None:
        with self._lock:
            channels, self._channels = self._channels, []
        for channel in channels:
            self._loop.run(channel.api.transport.close())

    # --- on the loop --------------------------------------------------------------------------------------------------
    def _admit(self, target: ListenTarget) -> None:
        if target.stopped:
            return
        if self._opening >= self._max_opening:
            self._waiting.append(target)
            return
        self._opening += 1
        target.opening = True
        self._place(target)

    def opened(self, target: ListenTarget) -> None:
        """The target got its first snapshot, or stopped: its opening place goes to the next waiting target."""
        if not target.opening:
            return
        target.opening = False
        self._opening -= 1
        while self._waiting and self._opening < self._max_opening:
            waiting = self._waiting.popleft()
            if not waiting.stopped:
                self._opening += 1
                waiting.opening = True
                self._place(waiting)

    def _place(self, target: ListenTarget) -> None:
        now = time.monotonic()
        with self._lock:
            stream = None if target.stopped else self._stream_with_room(now)
            if stream is not None:
                stream.channel.targets += 1
                target.channel = stream.channel
        if stream is None:  # closed meanwhile: released already
            self.opened(target)
            return
        stream.add(target)

    def _stream_with_room(self, now: float) -> SharedListen:
        """Under the lock: the stream the last target went to while it has room (queries fill one stream after
        another: looking through every stream for each is half a million ``has_room`` calls for 10,000 queries
        on 100 streams), else the first stream with room, on the first connection with room (fewer connections,
        each well under the server's limit)."""
        filling = self._filling
        if filling is not None and filling in filling.channel.streams and filling.has_room(now):
            return filling
        stream = next((stream for channel in self._channels for stream in channel.streams
                       if stream.has_room(now)), None)
        if stream is None:
            channel = next((c for c in self._channels if len(c.streams) < self.max_streams), None)
            if channel is None:
                channel = ListenChannel(len(self._channels))
                self._channels.append(channel)
            stream = SharedListen(self, channel)
            channel.streams.append(stream)
        self._filling = stream
        return stream

    def _remove(self, target: ListenTarget) -> None:
        self.opened(target)
        if target.stream is not None:
            target.stream.remove(target)

    def forget(self, stream: SharedListen) -> None:
        """On the loop: an empty or failed stream leaves its connection."""
        with self._lock:
            if stream in stream.channel.streams:
                stream.channel.streams.remove(stream)


class _ResetTarget(Exception):
    """The server's document count for a target disagrees with ours: it starts over without a resume token."""


class SharedListen:
    """One ``Listen`` call carrying many targets; everything here runs on the loop."""

    def __init__(self, pool: ListenChannelPool, channel: ListenChannel) -> None:
        self._pool = pool
        self.channel = channel
        self.targets: dict[int, ListenTarget] = {}
        self._next_id = 1
        self._requests: asyncio.Queue | None = None  # the live call's request side
        self._task: asyncio.Task | None = None
        self._call: Any = None  # the live Listen call
        self._reconnecting = False
        self.calls = 0  # Listen calls made: the first, then one per reconnect
        self.failed = False
        self.last_message_at = time.monotonic()
        self.heartbeats_seen = False
        self._quiet_since_no_change = False

    def has_room(self, now: float) -> bool:
        return not self.failed and len(self.targets) < self._pool.targets_per_stream and not self.stalled(now)

    def stalled(self, now: float, stall_s: float | None = None) -> bool:
        """Silent past ``stall_s`` although the server heart-beats it (Firestore sends a NO_CHANGE about every 30 s
        on an idle stream; the emulator sends none, so an idle emulator stream is never taken for a stalled one)."""
        return self.heartbeats_seen and now - self.last_message_at > (stall_s or self._pool.stall_s)

    def add(self, target: ListenTarget) -> None:
        target.target_id = self._next_id
        self._next_id += 1
        self.targets[target.target_id] = target
        target.stream = self
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._listen_forever())
        elif self._requests is not None:
            self._requests.put_nowait(target.add_request())

    def remove(self, target: ListenTarget, *, tell_server: bool = True) -> None:
        if self.targets.get(target.target_id) is target:
            del self.targets[target.target_id]
            if tell_server and self._requests is not None:
                self._requests.put_nowait(ListenRequest(database=target.database, remove_target=target.target_id))
        target.stream = None
        if not self.targets:
            self._stop()

    def reconnect(self) -> None:
        """Drop the live call; the next one adds every target again with its resume token (what a server ending
        the stream does)."""
        if self._call is not None:
            self._reconnecting = True
            self._call.cancel()

    def _reset(self, target: ListenTarget) -> None:
        """Remove the target and add it again under a new id, without a resume token (its documents were reset);
        the old id's late responses are ignored."""
        del self.targets[target.target_id]
        if self._requests is not None:
            self._requests.put_nowait(ListenRequest(database=target.database, remove_target=target.target_id))
        self.add(target)

    def _stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._requests = None
        self._pool.forget(self)

    async def _listen_forever(self) -> None:
        delay = _BACKOFF_FIRST_S
        while self.targets:
            try:
                if await self._listen_once():
                    delay = _BACKOFF_FIRST_S
                    continue  # the server ended a stream that worked: resume at once
            except (gexc.GoogleAPICallError, grpc.aio.AioRpcError) as exc:
                error = gexc.from_grpc_error(exc) if isinstance(exc, grpc.aio.AioRpcError) else exc
                if not isinstance(error, _RECOVERABLE):
                    self._fail(error)
                    return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a protocol surprise: the watchdog replaces every target
                self._fail(exc, traceback=True)
                return
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, _BACKOFF_MAX_S)

    async def _listen_once(self) -> bool:
        """One Listen call until the server ends it; True if it delivered anything (the backoff then restarts).
        Every target is added again with its own resume token."""
        requests: asyncio.Queue = asyncio.Queue()
        for target in self.targets.values():
            requests.put_nowait(target.add_request())
        self._requests = requests
        first = next(iter(self.targets.values()))
        try:
            call = await asyncio.wait_for(self.channel.api.listen(
                requests=_requests(requests), metadata=first.rpc_metadata, retry=None, timeout=None,
            ), _CALL_OPEN_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise gexc.DeadlineExceeded("the Listen call was not answered") from None
        self._call = call
        self.calls += 1
        delivered = False
        try:
            async for response in call:
                if response is None or self._reconnecting:
                    # None: gRPC could not read a message (a frame cut by a cancelled read, or corrupt): resume on a
                    # new call, as after a reconnect.
                    break
                delivered = True
                self._dispatch(response)
        except asyncio.CancelledError:
            if not self._reconnecting or asyncio.current_task().cancelling():
                raise  # the stream was stopped
        finally:
            self._reconnecting = False
            self._call = None
            call.cancel()
            if self._requests is requests:
                self._requests = None
        return delivered

    def _dispatch(self, response: Any) -> None:
        """Hand a response to the targets it names (all of them when it names none)."""
        self.last_message_at = time.monotonic()
        pb = response._pb
        which = pb.WhichOneof("response_type")
        ids: Any = ()
        if which == "target_change":
            change = pb.target_change
            ids = change.target_ids
            if change.target_change_type == _NO_CHANGE and not ids:
                # Two consistency markers in a row, with nothing in between: the server heart-beats this stream.
                self.heartbeats_seen = self.heartbeats_seen or self._quiet_since_no_change
                self._quiet_since_no_change = True
                if change.HasField("read_time"):
                    self._consistent_point(response, change.resume_token)
                return
            self._quiet_since_no_change = False
            if change.target_change_type == _REMOVE:
                for target_id in ids:  # the server dropped these targets (or acknowledged our remove_target)
                    target = self.targets.get(target_id)
                    if target is not None:
                        self.remove(target, tell_server=False)
                        target.removed_by_server(change.cause.code, change.cause.message)
                return
        else:
            self._quiet_since_no_change = False
            if which == "document_change":
                ids = [*pb.document_change.target_ids, *pb.document_change.removed_target_ids]
            elif which == "document_delete":
                ids = pb.document_delete.removed_target_ids
            elif which == "document_remove":
                ids = pb.document_remove.removed_target_ids
            elif which == "filter":
                ids = (pb.filter.target_id,)
        targets = [self.targets[i] for i in ids if i in self.targets] if ids else list(self.targets.values())
        for target in targets:
            try:
                target.apply(response)
            except _ResetTarget:
                self._reset(target)

    def _consistent_point(self, response: Any, resume_token: bytes) -> None:
        """A NO_CHANGE naming no target: a consistent point for every CURRENT target (firestore.proto). The emulator
        sends one after each target's first snapshot, so a hundred targets added at once get a hundred of them,
        each for every target of the stream (10,000 per stream, 200,000 for a thousand users' attach). A target
        that has pushed its snapshot and has nothing new only takes the resume token (what ``ListenTarget.apply``
        would do, without its cost); the others build their snapshot there."""
        for target in list(self.targets.values()):
            if not target.current:
                continue  # not consistent yet: its own CURRENT comes first
            if target.has_pushed and not target.change_map:
                target.resume_token = resume_token
            else:
                target.apply(response)

    def _fail(self, error: BaseException, *, traceback: bool = False) -> None:
        self.failed = True
        log.warning("firestore_stream_failed", error=type(error).__name__, targets=len(self.targets),
                    exc_info=error if traceback else None)
        targets, self.targets = list(self.targets.values()), {}
        for target in targets:
            target.stream = None
            target.fail()
        self._task = None
        self._requests = None
        self._pool.forget(self)


async def _requests(queue: asyncio.Queue) -> Any:
    while True:  # until the call is cancelled
        yield await queue.get()
