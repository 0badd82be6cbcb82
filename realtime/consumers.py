"""``/ws``: authenticated sockets that receive their user's (or one chat thread's) events, in seq order.

The process dispatcher hands each socket its channel's events. The next event of an idle socket is written at once by
the server's synchronous send (no task); otherwise it goes to the socket's bounded queue, drained by a writer task
(alive only while frames are pending), which waits for a slow client, drops duplicates (seq already sent), fills gaps
from history, and sends ``recovery.failed`` when history can't cover one. A socket whose queue overflows is closed
with 4008 and counted; the others never wait for it.
"""
from __future__ import annotations

import asyncio
import collections
import json
import uuid
from typing import Any
from urllib.parse import parse_qs

import structlog
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from core.asgi_extensions import SEND_TEXT_NOW
from core.metrics import RECOVERIES, WS_CONNECTIONS, WS_DELIVERY_FAILURES, WS_REJECTED, WS_SLOW_CLOSES

from . import history, presence
from .auth import (
    CLOSE_BAD_REQUEST, CLOSE_DISCONNECTED_BY_STAFF, CLOSE_SLOW_CONSUMER, CLOSE_TRY_AGAIN, authorize, is_user_token,
)
from .channels import chat_channel, user_channel
from .chat_access import chat_refusal
from .control import DISCONNECT
from .dispatcher import get_dispatcher
from .envelope import utc_now_iso
from .events import PONG, RECOVERY_FAILED

PONG_FRAME = json.dumps({"type": PONG}, separators=(",", ":"))

log = structlog.get_logger(__name__)

_RESYNC = object()  # queue marker: catch up from history after the dispatcher lost its connection
_MAX_PARAM = 256


def _cannot_send_now(payload: bytes) -> bool:
    return False  # a server without the extension (daphne, uvicorn's own protocols): every frame goes by the writer


def seq_of(message: bytes) -> int:
    # Envelopes end with '"seq":N}' (the publisher's Lua appends it), so no full JSON parse on the hot path.
    return int(message[message.rindex(b'"seq":') + 6 : -1])


def _query(scope: dict[str, Any]) -> dict[str, str]:
    parsed = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    return {key: values[-1] for key, values in parsed.items()}


def _bearer(scope: dict[str, Any], query: dict[str, str]) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return query.get("token") or None


# Read once at connect and then dropped: the scope lives as long as the socket (uvicorn's protocol and the consumer
# hold it), and the headers alone are ~1.3 KB. path and query_string stay: uvicorn logs them if the handshake failed.
_REQUEST_KEYS = ("headers", "raw_path", "subprotocols", "extensions", "state")


class EventsConsumer(AsyncWebsocketConsumer):
    # No Channels layer (README "Choices, by measurement"): events and control messages arrive through the process
    # dispatcher (realtime/dispatcher.py, realtime/control.py); None skips the layer lookup on every connect.
    channel_layer_alias = None
    groups = ()  # no Channels groups (AsyncWebsocketConsumer would give each socket an empty list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """AsyncConsumer.__call__ without a channel layer: the socket's events, one at a time, to ``dispatch``.
        Channels' version waits through ``await_many_dispatch`` (made to also read a layer channel): a task per
        pending receive plus ``asyncio.wait``'s waiter and callbacks, ~3 KB per idle socket (bench/ws_heap.py)."""
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch, less its ``aclose_old_connections()`` before every handler: a hop to the process's one
        thread-sensitive sync thread per message, to close stale ORM connections these consumers never open (their
        auth is a token, their chat checks run on the worker threads). At 10,000 sockets that one thread was what
        paced opening them (about 100 a second)."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        await self.disconnect(message["code"])  # no groups to leave, no ORM connection to close (see dispatch)
        raise StopConsumer()

    async def connect(self) -> None:
        query = _query(self.scope)
        self.uid = query.get("uid", "")
        self.channel: str | None = None
        await self.accept()  # accept first so a refusal carries a 4xxx close code, as the contract says
        token = _bearer(self.scope, query)
        self.send_now = (self.scope.get("extensions") or {}).get(SEND_TEXT_NOW, _cannot_send_now)
        for key in _REQUEST_KEYS:
            self.scope.pop(key, None)
        refusal = self._validate(query) or await authorize(self.uid, token, (self.scope.get("client") or [None])[0])
        if refusal is None and query.get("space_code"):
            refusal = await chat_refusal(self.uid, query["space_code"], query["thread_key"], query.get("mode", ""),
                                         user_token=is_user_token(token))
        if refusal is not None:
            WS_REJECTED.labels(str(refusal)).inc()
            log.info("ws_refused", code=refusal)
            await self.close(code=refusal)
            return
        await self._open(query)

    def _validate(self, query: dict[str, str]) -> int | None:
        values = [self.uid, query.get("space_code", ""), query.get("thread_key", ""), query.get("since", "")]
        if not self.uid or any(len(v) > _MAX_PARAM or "|" in v or not v.isprintable() for v in values):
            return CLOSE_BAD_REQUEST
        if bool(query.get("space_code")) != bool(query.get("thread_key")):
            return CLOSE_BAD_REQUEST
        if query.get("mode", "") not in ("", "auto", "chats", "job_chats"):
            return CLOSE_BAD_REQUEST
        since = query.get("since", "")
        if since and not since.isdigit():
            return CLOSE_BAD_REQUEST
        return None

    async def _open(self, query: dict[str, str]) -> None:
        self.socket_id = uuid.uuid4().hex
        chat = None
        if query.get("space_code"):
            mode = query.get("mode", "")
            chat = presence.ChatInterest(query["space_code"], query["thread_key"], "" if mode == "auto" else mode)
            self.channel = chat_channel(self.uid, chat.space_code, chat.thread_key)
        else:
            self.channel = user_channel(self.uid)
        self.member = presence.socket_member(self.socket_id, chat)
        # Made on the first queued frame and dropped once drained: an empty deque is 760 bytes per idle socket.
        self.pending: collections.deque | tuple = ()
        self.writer: asyncio.Task | None = None
        self.ready = False  # the history replay of `since` must go out before any live frame
        self.last_seq: int | None = None
        self.closing = False
        WS_CONNECTIONS.inc()
        # The channel's position before subscribing is where this socket starts: a live message at or below it was
        # published before the socket existed (on a cluster, PUBLISH reaches other nodes over the cluster bus, so it
        # can arrive after our SUBSCRIBE) and is dropped; one published between this read and the subscription
        # shows as a gap at the next event and comes from history. `since` replays from the client's own number.
        # The read gives the channel an epoch if it has none, so even a brand-new channel's first event is sent inline.
        start = await history.start_position(self.channel)
        await get_dispatcher().subscribe(self.channel, self)
        self.epoch = start.epoch
        since = query.get("since", "")
        if since:
            await self._recover(int(since), check_epoch=False)  # the client's numbers carry no epoch
        else:
            self.last_seq = start.seq
        await presence.ajoin(self.uid, self.member)
        get_dispatcher().track_member(self.uid, self.member, self)  # heart-beaten with every local socket in one pipeline
        self.ready = True
        self._wake_writer()
        log.info("ws_connect", uid=self.uid, channel=self.channel, since=since or None)  # the original's name

    # --- delivery --------------------------------------------------------------------------------------------
    def deliver(self, message: bytes | str | object, seq: int | None = None) -> None:
        """Called by the dispatcher for every message of this socket's channel (``seq``: the event's, when the caller
        already knows it); never blocks."""
        if self.closing:
            return
        if isinstance(message, bytes) and self._send_inline(message, seq_of(message) if seq is None else seq):
            return
        if len(self.pending) >= settings.LISTENERS_WS_SEND_QUEUE:
            self._close_slow()
            return
        if not self.pending:
            self.pending = collections.deque()
        self.pending.append(message)
        self._wake_writer()

    def _send_inline(self, message: bytes, seq: int) -> bool:
        """The hot path: the next event of an idle socket is written on the dispatcher's stack by the server's
        synchronous send, with no task and no coroutine (a fan-out to N local users is N transport writes). Only when
        nothing is queued or being written, the epoch is known and there is no gap, and only if the transport takes
        the frame now: when the client's buffer is full the event takes the queue, so the writer waits for the
        client, later events queue behind it and the 4008 close still applies. False: take the queue."""
        if not self.ready or self.pending or self.epoch is None or (self.writer is not None and not self.writer.done()):
            return False
        if self.last_seq is not None and seq != self.last_seq + 1:
            return False  # a duplicate or a gap: the writer drops it or fills the gap from history
        try:
            if not self.send_now(message):
                return False
        except Exception:  # noqa: BLE001 - as in _write_pending: a dead transport
            self._delivery_failed()
            return True
        self.last_seq = seq
        return True

    def _delivery_failed(self) -> None:
        WS_DELIVERY_FAILURES.inc()
        log.warning("ws_delivery_failed", exc_info=True)
        self.closing = True
        asyncio.get_running_loop().create_task(self.close(code=CLOSE_TRY_AGAIN))

    def resync(self) -> None:
        self.deliver(_RESYNC)

    def _wake_writer(self) -> None:
        # The writer task exists only while frames are pending: idle sockets cost no task (memory per connection).
        if self.ready and self.pending and (self.writer is None or self.writer.done()) and not self.closing:
            self.writer = asyncio.get_running_loop().create_task(self._write_pending())

    def _close_slow(self) -> None:
        self.closing = True
        WS_SLOW_CLOSES.inc()
        log.warning("ws_slow_consumer_closed", queued=len(self.pending))
        self.pending = ()
        if self.writer is not None:
            self.writer.cancel()
        asyncio.get_running_loop().create_task(self.close(code=CLOSE_SLOW_CONSUMER))

    async def _write_pending(self) -> None:
        try:
            while self.pending:
                item = self.pending.popleft()
                if not self.pending:
                    self.pending = ()  # idle again: no deque kept
                if item is _RESYNC:
                    await self._catch_up()
                elif isinstance(item, str):  # pong and other control replies
                    await self.send(text_data=item)
                else:
                    await self._send_event(item)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a dead transport or Redis hiccup: count it, close, the client resumes with since
            WS_DELIVERY_FAILURES.inc()
            log.warning("ws_delivery_failed", exc_info=True)
            self.closing = True
            await self.close(code=CLOSE_TRY_AGAIN)

    async def _send_event(self, item: bytes) -> None:
        seq = seq_of(item)
        if self.epoch is None:
            self.epoch = (await history.position(self.channel)).epoch
        if self.last_seq is not None:
            if seq <= self.last_seq:
                return  # already sent (history replay overlapped the live stream)
            if seq > self.last_seq + 1:
                await self._recover(self.last_seq)  # a gap: pub/sub lost messages; history fills it
                if seq <= self.last_seq:
                    return
        await self.send(text_data=item.decode())
        self.last_seq = seq

    async def _catch_up(self) -> None:
        """After the dispatcher reconnected: fill what pub/sub missed, or report that history can't.

        History reset (a new epoch: Redis came back empty): what the old epoch held after ``last_seq`` is lost and the
        client is told so, but what the new epoch already holds is not: it follows, from its first event. So the
        socket gets the same frames whether the publishers' retry queues drained before this read or after it (on a
        cluster coming back, either can come first); before, an early drain left those events skipped as covered."""
        now = await history.position(self.channel)
        if self.epoch is not None and now.epoch != self.epoch:
            fresh = await history.recover(self.channel, 0, now.epoch) if now.epoch is not None else None
            start = history.Position(0, now.epoch) if fresh is not None else now
            await self._recovery_failed(self.last_seq or 0, start, "history was reset (new epoch)")
            if fresh is not None:
                for message in fresh.events:
                    await self.send(text_data=message.decode())
                self.last_seq, self.epoch = fresh.position.seq, fresh.position.epoch
        elif now.seq > (self.last_seq or 0):
            await self._recover(self.last_seq or 0)

    async def _recover(self, since: int, check_epoch: bool = True) -> None:
        recovery = await history.recover(self.channel, since, self.epoch if check_epoch else None)
        if recovery is None:
            await self._recovery_failed(since, await history.position(self.channel), "history does not cover the gap")
            return
        RECOVERIES.labels("true").inc()
        for message in recovery.events:
            await self.send(text_data=message.decode())
        self.last_seq, self.epoch = recovery.position.seq, recovery.position.epoch

    async def _recovery_failed(self, since: int, now: history.Position, reason: str) -> None:
        """Tell the client to re-sync from the source; numbering continues after ``current_seq``."""
        RECOVERIES.labels("false").inc()
        self.last_seq, self.epoch = now.seq, now.epoch
        await self.send(
            text_data=json.dumps(
                {
                    "type": RECOVERY_FAILED,
                    "uid": self.uid,
                    "timestamp": utc_now_iso(),
                    "payload": {"channel": self.channel, "since": since, "current_seq": now.seq,
                                "reason": f"{reason}; re-sync from the source"},
                    "event_id": uuid.uuid4().hex,
                }
            )
        )

    # --- client → server -------------------------------------------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.channel is None or not text_data:
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            return
        if isinstance(message, dict) and message.get("type") == "ping":
            self.deliver(PONG_FRAME)

    def control(self, action: str) -> None:
        """A staff action for this socket's user, delivered by the dispatcher (realtime/control.py)."""
        if action == DISCONNECT and not self.closing:
            self.closing = True
            if self.writer is not None:
                self.writer.cancel()
            asyncio.get_running_loop().create_task(self.close(code=CLOSE_DISCONNECTED_BY_STAFF))

    async def disconnect(self, code: int) -> None:
        if self.channel is None:
            return
        self.closing = True
        if self.writer is not None:
            self.writer.cancel()
        WS_CONNECTIONS.dec()
        dispatcher = get_dispatcher()
        dispatcher.untrack_member(self.uid, self.member, self)
        await dispatcher.unsubscribe(self.channel, self)
        await presence.aleave(self.uid, self.member)
        log.info("ws_disconnect", uid=self.uid, code=code)  # the original's name
        self.channel = None
