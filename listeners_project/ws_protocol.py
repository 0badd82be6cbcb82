"""uvicorn's WebSocket protocol for the gateway: the sans-I/O ``websockets`` one, plus what it lacks for us.

Measured with 1,000 idle ``/ws`` sockets (bench/ws.py): uvicorn's default ``websockets`` protocol (the legacy
implementation) costs about 10 KB more per connection than ``websockets-sansio``, mostly its three asyncio tasks per
connection (data transfer, keepalive ping, close). The sans-I/O protocol has no task of its own, but as shipped it
(a) never applies write backpressure: ``send()`` never waits, so a slow client's frames pile up in the transport buffer
without bound and our per-socket queue (and its 4008 close) never sees them; and (b) never pings, so a peer that
vanished without a FIN (network loss, a suspended laptop) stays "online" in presence forever.

This subclass adds both without per-connection tasks:

* ``pause_writing``/``resume_writing`` gate ``send()`` on the transport's high-water mark (asyncio's flow control);
* ONE keepalive sweep per event loop (a ``call_later`` chain) pings connections that have been silent for
  ``--ws-ping-interval`` seconds and aborts those silent for ``--ws-ping-interval + --ws-ping-timeout`` (uvicorn's own
  options, 20 s + 20 s by default). Any frame from the peer (a pong included) counts as a sign of life. The time
  from a keepalive ping to its pong is the ping RTT metric (``gateway_ws_ping_rtt_seconds``).

And it is leaner per idle connection (bench/ws_heap.py, a tracemalloc diff around 1,000 idle sockets): the ASGI
receive queue and the writable flag were an ``asyncio.Queue`` and an ``asyncio.Event``, four deques of 760 bytes each
even when empty (3 KB per connection); here they are a list and a flag with one waiter at a time (``_ReceiveQueue``,
``_Writable``). The handshake's request and response (their headers: about 3 KB) are dropped once the socket is
accepted: ``websockets``' parser generator keeps the parsed request in a local variable for the connection's lifetime,
so its headers are emptied in place. uvicorn's ``ProxyHeadersMiddleware`` (``--proxy-headers``, on by default) is
applied here to the scope, with the same rules, instead of as a middleware: its coroutine frame stays alive as long as
the socket, holding a dict of every request header (0.6 KB per connection).

And a synchronous send for the fan-out's hot path (``send_text_now``, offered to the application as the scope
extension ``gateway.websocket.send_text_now``): one event to N local sockets is N calls that frame the bytes and write
them to the transport, with no coroutine, no ASGI message dict and no ``websockets`` frame object per socket; when the
transport is paused (the client is slow) it returns False and the application sends through the ASGI ``send``, which
waits for the buffer to drain.

Run it with ``uvicorn ... --ws listeners_project.ws_protocol:GatewayWebSocketProtocol``.
"""
from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State

from core.asgi_extensions import SEND_TEXT_NOW
from core.metrics import ws_ping_rtt

_KEEPALIVE_PAYLOAD = b"ka"


class _KeepaliveSweep:
    """Per-loop set of open connections, visited every quarter ping interval by one timer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float, timeout: float) -> None:
        self.loop = loop
        self.interval = interval
        self.timeout = timeout
        self.connections: set[GatewayWebSocketProtocol] = set()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, connection: GatewayWebSocketProtocol) -> None:
        self.connections.add(connection)
        if self._timer is None:
            self._timer = self.loop.call_later(self.interval / 4, self._sweep)

    def discard(self, connection: GatewayWebSocketProtocol) -> None:
        self.connections.discard(connection)

    def _sweep(self) -> None:
        self._timer = None
        now = self.loop.time()
        for connection in tuple(self.connections):
            silent_for = now - connection.last_heard
            if silent_for >= self.interval + self.timeout:
                connection.abort_silent_peer()
            elif silent_for >= self.interval:
                connection.send_keepalive_ping()
        if self.connections:
            self._timer = self.loop.call_later(self.interval / 4, self._sweep)


_sweeps: dict[asyncio.AbstractEventLoop, _KeepaliveSweep] = {}


class _ReceiveQueue:
    """What uvicorn uses of ``asyncio.Queue`` (``put_nowait``, ``get``, ``empty``) for its one reader, the ASGI
    application's ``receive``: events rarely wait here, so a list, and a future only while the reader waits."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)


class _Writable:
    """``asyncio.Event`` as uvicorn's ``send`` uses it (the transport's flow control), with a waiter list only while
    a sender waits (a paused transport); set, it costs ``send`` no wait at all."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(True)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        await waiter
        return True


class GatewayWebSocketProtocol(WebSocketsSansIOProtocol):
    last_heard: float = 0.0
    ping_sent_at: float | None = None  # loop time of the keepalive ping still waiting for its pong

    trusted_hosts: Any = None  # uvicorn's --forwarded-allow-ips, when --proxy-headers is on

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _ReceiveQueue()  # type: ignore[assignment]
        self.writable = _Writable()  # type: ignore[assignment]
        if isinstance(self.app, ProxyHeadersMiddleware):
            self.trusted_hosts, self.app = self.app.trusted_hosts, self.app.app

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)  # builds the scope and creates the application's task, which has not run yet
        if self.response.status_code == 101:
            self.scope["extensions"][SEND_TEXT_NOW] = self.send_text_now
            if self.trusted_hosts is not None:
                _apply_proxy_headers(self.scope, self.trusted_hosts)

    def send(self, message: Any) -> Any:  # the ASGI send: a plain function, no extra frame on the hot path
        if message["type"] == "websocket.accept":
            return self._accept(message)
        return super().send(message)

    def send_text_now(self, payload: bytes) -> bool:
        """One text frame (``payload``: UTF-8) written now; False, with nothing written, when the ASGI ``send`` would
        have to wait (the transport is paused: the client reads slower than we write) or could not send at all
        (before the handshake, after a close): the caller then goes through ``send``, which waits or raises."""
        if (not self.writable.is_set() or not self.handshake_complete or self.close_sent or self.initial_response
                or self.conn.state is not State.OPEN or self.conn.expect_continuation_frame
                or self.transport.is_closing()):
            return False
        if self.conn.extensions:  # per-message deflate (off in production): websockets compresses and frames
            self.conn.send_text(payload)
            self.transport.write(b"".join(self.conn.data_to_send()))
            return True
        length = len(payload)  # a server's frame: FIN + text opcode, unmasked (RFC 6455 5.2)
        if length < 126:
            header = bytes((0x81, length))
        elif length < 65536:
            header = b"\x81\x7e" + length.to_bytes(2, "big")
        else:
            header = b"\x81\x7f" + length.to_bytes(8, "big")
        self.transport.write(header + payload)
        return True

    async def _accept(self, message: Any) -> None:
        await super().send(message)
        self.request.headers.clear()  # still referenced by the parser generator's frame (see the module's docstring)
        self.request = self.response = None  # the handshake is over; the scope has what the application reads

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.last_heard = self.loop.time()
        interval, timeout = self.config.ws_ping_interval, self.config.ws_ping_timeout
        if interval and timeout:
            sweep = _sweeps.get(self.loop)
            if sweep is None:
                sweep = _sweeps[self.loop] = _KeepaliveSweep(self.loop, interval, timeout)
            sweep.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        sweep = _sweeps.get(self.loop)
        if sweep is not None:
            sweep.discard(self)
        self.writable.set()  # a sender waiting for the buffer to drain must not wait on a dead connection
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.last_heard = self.loop.time()
        super().data_received(data)

    def handle_events(self) -> None:
        if self.ping_sent_at is not None:  # only while a keepalive ping is out: no cost on ordinary frames
            for event in self.conn.events:  # not yet drained: super() takes them with events_received()
                if isinstance(event, Frame) and event.opcode is Opcode.PONG and event.data == _KEEPALIVE_PAYLOAD:
                    ws_ping_rtt().observe(self.loop.time() - self.ping_sent_at)
                    self.ping_sent_at = None
                    break
        super().handle_events()

    # asyncio flow control: the transport calls these at its high/low-water marks; send() waits on `writable`.
    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def send_keepalive_ping(self) -> None:
        if self.handshake_complete and self.conn.state is State.OPEN and not self.transport.is_closing():
            self.conn.send_ping(_KEEPALIVE_PAYLOAD)
            self.transport.write(b"".join(self.conn.data_to_send()))
            if self.ping_sent_at is None:  # pongs come in order: the first one answers the first ping still out
                self.ping_sent_at = self.loop.time()

    def abort_silent_peer(self) -> None:
        # No close handshake: the peer is not answering. connection_lost() tells the app (websocket.disconnect).
        self.logger.info("%s - WebSocket keepalive timeout", self.client)
        self.transport.abort()


def _apply_proxy_headers(scope: dict[str, Any], trusted_hosts: Any) -> None:
    """uvicorn's ``ProxyHeadersMiddleware.__call__`` (0.38), for a WebSocket scope, without a frame kept alive."""
    client = scope.get("client")
    if (client[0] if client else None) not in trusted_hosts:
        return
    headers = dict(scope["headers"])
    if b"x-forwarded-proto" in headers:
        proto = headers[b"x-forwarded-proto"].decode("latin1").strip()
        if proto in {"http", "https", "ws", "wss"}:
            scope["scheme"] = proto.replace("http", "ws")
    if b"x-forwarded-for" in headers:
        host = trusted_hosts.get_trusted_client_host(headers[b"x-forwarded-for"].decode("latin1"))
        if host:  # an empty X-Forwarded-For leaves the client as it is, as uvicorn does
            scope["client"] = (host, 0)
