"""Closed-loop HTTP/1.1 load for the benchmarks that drive the gateway over HTTP (bench/registry.py, bench/soak.py,
bench/rpc.py).

Each client holds one keep-alive connection and sends its next request as soon as the previous answer arrives. A
mode decides the requests: ``register`` (REGISTRY.register_user, a new session id and idempotency key per call),
``heartbeat`` (REGISTRY.heartbeat of the client's one session), ``unregister`` (REGISTRY.unregister_session of
sessions registered beforehand, ``presessions``), ``healthz`` (GET /healthz), ``login`` (whole sessions: register,
two heartbeats, unregister, so a long run leaves no sessions behind), ``ping`` (the same REGISTRY.ping every time,
bench/rpc.py's cheapest method) and ``ping-fresh`` (REGISTRY.ping with a new idempotency key per call). Runs in its own process (spawn), so
the load generator never shares a core's interpreter with what it measures.
"""
from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import time
from dataclasses import dataclass

MODES = ("register", "heartbeat", "unregister", "healthz", "login", "ping", "ping-fresh")
PING_BODY = {"method": "REGISTRY.ping"}


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def uid_of(client: int) -> str:
    return f"bench-u{client}"


def presession_id(client: int, n: int) -> str:
    return f"pre-{client}-{n}"


def _post(host: str, port: int, token: str, envelope: dict) -> bytes:
    return post_bytes(host, port, token, json.dumps(envelope, separators=(",", ":")).encode())


def post_bytes(host: str, port: int, token: str, body: bytes) -> bytes:
    head = (
        f"POST /rpc HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def request_for(mode: str, host: str, port: int, token: str, client: int, n: int, session_id: str = "") -> bytes:
    uid, tag = uid_of(client), f"{os.getpid()}-{client}-{n}"
    if mode == "login":  # a whole session, four requests: register, two heartbeats, unregister (the soak's mix)
        cycle, step = divmod(n, 4)
        sid = f"l-{os.getpid()}-{client}-{cycle}"
        if step == 0:
            return request_for("register", host, port, token, client, n, session_id=sid)
        if step < 3:
            return _post(host, port, token, {"method": "REGISTRY.heartbeat", "args": [sid], "user_id": uid})
        return _post(host, port, token, {"method": "REGISTRY.unregister_session", "args": [sid], "user_id": uid,
                                         "idempotency_key": f"unreg-{tag}"})
    if mode == "register":
        return _post(host, port, token, {"method": "REGISTRY.register_user", "args": [uid, session_id or f"s-{tag}"],
                                         "user_id": uid, "idempotency_key": f"reg-{tag}"})
    if mode == "heartbeat":
        return _post(host, port, token, {"method": "REGISTRY.heartbeat", "args": [f"hb-{client}"], "user_id": uid})
    if mode == "ping":
        return _post(host, port, token, PING_BODY)
    if mode == "ping-fresh":
        return _post(host, port, token, {**PING_BODY, "idempotency_key": f"bench-{tag}"})
    if mode == "unregister":
        return _post(host, port, token, {"method": "REGISTRY.unregister_session", "args": [presession_id(client, n)],
                                         "user_id": uid, "idempotency_key": f"unreg-{tag}"})
    return f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()


async def _drive(host: str, port: int, token: str, mode: str, clients: int, warmup_s: float,
                 seconds: float) -> LoadResult:
    latencies: list[float] = []
    counters = {"requests": 0, "errors": 0}
    measuring, stop = asyncio.Event(), asyncio.Event()

    same_every_time = request_for(mode, host, port, token, 0, 0) if mode in ("ping", "healthz") else None

    async def client(number: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        if mode == "heartbeat":  # the session it beats for
            writer.write(request_for("register", host, port, token, number, -1, session_id=f"hb-{number}"))
            await _read(reader)
        sent = 0
        try:
            while not stop.is_set():
                request = same_every_time or request_for(mode, host, port, token, number, sent)
                sent += 1
                started = time.perf_counter()
                writer.write(request)
                status, payload = await _read(reader)
                elapsed_ms = (time.perf_counter() - started) * 1000
                if measuring.is_set() and not stop.is_set():
                    counters["requests"] += 1
                    latencies.append(elapsed_ms)
                    # /healthz is 503 (degraded) when the bench runs without Firestore: still a complete answer
                    ok = status in (200, 503) if mode == "healthz" else status == 200 and b'"ok":true' in payload
                    counters["errors"] += not ok
        finally:
            writer.close()

    tasks = [asyncio.create_task(client(n)) for n in range(clients)]
    await asyncio.sleep(warmup_s)
    measuring.set()
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    stop.set()
    elapsed = time.perf_counter() - started
    await asyncio.gather(*tasks, return_exceptions=True)
    return LoadResult(counters["requests"], counters["errors"], elapsed, latencies)


async def _read(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return int(head[9:12]), await reader.readexactly(length)


def _load_process(args: tuple, queue: multiprocessing.Queue) -> None:
    import uvloop

    queue.put(uvloop.run(_drive(*args)))


def run_load(address: str, token: str, mode: str, *, clients: int, warmup_s: float, seconds: float) -> LoadResult:
    host, port = address.rsplit(":", 1)
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue = context.Queue()
    process = context.Process(target=_load_process,
                              args=((host, int(port), token, mode, clients, warmup_s, seconds), queue))
    process.start()
    try:
        return queue.get(timeout=warmup_s + seconds + 120)
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
