"""bench/ws.py's WebSocket clients: one process of many light sockets, driven by the bench over stdin/stdout.

So that the bench measures the server and not its client, each socket is a bare asyncio protocol (uvloop): a
handshake, then frame headers parsed from the byte stream, a receive time taken per frame, a JSON parse only for the
latency frames, pongs for the server's keepalive pings. A frame costs this process a few µs (``websockets``' client:
tens of µs, so reading 10,000 frames of a fan-out took longer than the server writing them). The bench runs several
of these processes, each holding every ``--procs``-th user, and takes the last receive time over all of them.

    python bench/ws_clients.py HOST PORT TOKEN USERS PROCS INDEX

stdout, one JSON line each: ``{"ready": n}`` once every socket is open, then one answer per command on stdin:
``count``, ``clear``, ``latencies``, ``fanout K TIMEOUT_S`` (answers when K fan-out frames arrived: their last
receive time, wall clock), ``quit``.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import quote

_CLOSE = b"\x88\x82\x00\x00\x00\x00\x03\xe8"  # close 1000, masked with a zero key (client frames must be masked)


class Counters:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.fanout_times: list[float] = []
        self.fanout_target = 0
        self.fanout_done = asyncio.Event()

    def on_text(self, payload: bytes, now: float) -> None:
        if b'"fanout"' in payload:
            self.fanout_times.append(now)
            if len(self.fanout_times) >= self.fanout_target:
                self.fanout_done.set()
        elif b'"t"' in payload:
            self.latencies.append(now - json.loads(payload)["payload"]["t"])


class LightSocket(asyncio.Protocol):
    def __init__(self, counters: Counters, request: bytes, opened: asyncio.Future) -> None:
        self.counters = counters
        self.request = request
        self.opened = opened
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed during the handshake"))

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.buffer += data
        if not self.opened.done():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 101 " not in self.buffer[: self.buffer.find(b"\r\n")]:
                self.opened.set_exception(ConnectionError(bytes(self.buffer[:60]).decode("latin-1")))
                return
            del self.buffer[: end + 4]
            self.opened.set_result(None)
        buffer = self.buffer
        while len(buffer) >= 2:
            opcode, length, offset = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
            if length == 126:
                length, offset = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                length, offset = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < offset + length:
                return
            payload = bytes(buffer[offset : offset + length])
            del buffer[: offset + length]
            if opcode == 0x1:
                self.counters.on_text(payload, now)
            elif opcode == 0x9 and len(payload) < 126:  # ping: a pong with its payload (zero mask key)
                self.transport.write(bytes((0x8A, 0x80 | len(payload))) + b"\x00\x00\x00\x00" + payload)
            elif opcode == 0x8:
                self.transport.close()
                return

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_CLOSE)
            self.transport.close()


async def main(host: str, port: int, token: str, users: int, procs: int, index: int) -> None:
    loop = asyncio.get_running_loop()
    counters = Counters()
    sockets: list[LightSocket] = []

    async def open_one(n: int) -> None:
        path = f"/ws?uid=b{n}" + (f"&token={quote(token)}" if token else "")
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        opened = loop.create_future()
        _, protocol = await loop.create_connection(lambda: LightSocket(counters, request, opened), host, port)
        await asyncio.wait_for(opened, 120)
        sockets.append(protocol)

    mine = list(range(index, users, procs))
    for start in range(0, len(mine), 100):
        await asyncio.gather(*(open_one(n) for n in mine[start : start + 100]))
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    answer({"ready": len(sockets)})
    while True:
        command = (await reader.readline()).decode().split()
        if not command or command[0] == "quit":
            break
        if command[0] == "count":
            answer({"latencies": len(counters.latencies), "fanout": len(counters.fanout_times)})
        elif command[0] == "clear":
            counters.latencies.clear()
            counters.fanout_times.clear()
            answer({})
        elif command[0] == "latencies":
            answer({"latencies": counters.latencies})
        elif command[0] == "fanout":
            counters.fanout_target, counters.fanout_done = int(command[1]), asyncio.Event()
            if len(counters.fanout_times) < counters.fanout_target:
                try:
                    await asyncio.wait_for(counters.fanout_done.wait(), float(command[2]))
                except asyncio.TimeoutError:
                    pass
            times = counters.fanout_times
            answer({"count": len(times), "last": max(times) if times else None})
    for protocol in sockets:
        protocol.close()
    await asyncio.sleep(0.5)


def answer(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    import uvloop

    host, port, token, users, procs, index = sys.argv[1:7]
    uvloop.run(main(host, int(port), token, int(users), int(procs), int(index)))
