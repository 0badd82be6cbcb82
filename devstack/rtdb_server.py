"""Firebase Realtime Database stand-in for dev and tests.

Speaks the REST + server-sent-events protocol exactly as ``firebase_admin.db`` uses it (read from
firebase_admin/db.py; tests/devstack/test_rtdb_standin.py pins it), so the real SDK runs against it unchanged: point the SDK at it
with ``FIREBASE_DATABASE_EMULATOR_HOST=127.0.0.1:PORT`` or a ``http://127.0.0.1:PORT?ns=NAME``
databaseURL. Each ``ns`` is its own in-memory tree. Auth is not checked (unless a test asks for a token with
``require_token``) and security rules, priorities and server values (``.sv``) are not supported. Tests of stream
clients can also end every stream, send an event to every stream, and hold the keep-alives back.

Everything runs on one asyncio event loop: a listener is a queue plus two small tasks, so
thousands of them are cheap, and every read-compare-write happens without an ``await`` in between,
which is what makes ``if-match`` (and thus ``Reference.transaction()``) atomic.

Usage: ``RtdbStandin().start()`` in-process, or ``python -m devstack.rtdb_server --port 9000``.
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import logging
import signal
import socket
import threading
from dataclasses import dataclass
from typing import Callable, Optional, TypeVar
from urllib.parse import unquote

from . import rtdb_tree as tree
from .rtdb_tree import BadRequest, Json, Path

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_BODY = 256 * 1024 * 1024  # RTDB's own limit for one REST write
MAX_HEADERS = 100
MAX_QUEUED_FRAMES = 10_000  # a listener further behind than this is cut off; the SDK reconnects
ACCEPT_BACKLOG = 1024  # lets a thousand listeners connect at once
KNOWN_PARAMS = frozenset({"ns", "print", "shallow", "auth_variable_override", "auth", "access_token",
                          *tree.QUERY_PARAMS})  # auth params are accepted and ignored
REASONS = {200: "OK", 204: "No Content", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized",
           405: "Method Not Allowed", 412: "Precondition Failed", 413: "Payload Too Large",
           500: "Internal Server Error"}
# Keep-alive data must be exactly `null`: the SDK drops such frames, but a comment frame or any
# non-JSON data kills its listener thread.
KEEPALIVE_FRAME = b"event: keep-alive\ndata: null\n\n"
SSE_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Request:
    method: str
    path: Path
    params: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    keep_alive: bool

    @property
    def wants_stream(self) -> bool:
        return self.method == "GET" and "text/event-stream" in self.headers.get("accept", "")


@dataclass
class Reply:
    status: int
    body: Optional[bytes] = None
    etag: Optional[str] = None


def json_reply(status: int, value: Json, pretty: bool = False, etag: Optional[str] = None) -> Reply:
    # ASCII-escaped JSON keeps clients safe from charset guessing.
    text = json.dumps(value, indent=2) if pretty else json.dumps(value, separators=(",", ":"))
    return Reply(status, text.encode(), etag)


def error_reply(status: int, message: str) -> Reply:
    return json_reply(status, {"error": message})


def exception_reply(exc: Exception) -> Reply:
    """Firebase-shaped error for an HttpError, or a 400 for any other client error."""
    return error_reply(exc.status if isinstance(exc, HttpError) else 400, str(exc))


# --- HTTP/1.1 framing ---------------------------------------------------------------------------

async def read_request(reader: asyncio.StreamReader) -> Optional[Request]:
    """Reads one request; None when the client closed the connection between requests."""
    line = await reader.readline()
    if not line:
        return None
    try:
        method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ")
    except ValueError as exc:
        raise HttpError(400, "Malformed request line") from exc
    headers = await read_headers(reader)
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    path, params = parse_target(target)
    return Request(method.upper(), path, params, headers, await read_body(reader, headers), keep_alive)


async def read_headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or len(headers) >= MAX_HEADERS:
            raise HttpError(400, "Malformed header")
        headers[name.strip().lower()] = value.strip()
    return headers


def parse_target(target: str) -> tuple[Path, dict[str, str]]:
    raw_path, _, query = target.partition("?")
    if not raw_path.endswith(".json"):
        raise HttpError(400, "REST paths must end in .json")
    try:
        path = tree.parse_path(unquote(raw_path[:-len(".json")], errors="strict"))
        # Only %XX is decoded: the SDK sends "+" literally inside query values, so form decoding
        # (which turns "+" into a space) would corrupt them.
        params = {unquote(name, errors="strict"): unquote(value, errors="strict")
                  for name, _, value in (item.partition("=") for item in query.split("&") if item)}
    except UnicodeDecodeError as exc:
        raise HttpError(400, "URL is not valid percent-encoded UTF-8") from exc
    unknown = sorted(set(params) - KNOWN_PARAMS)
    if unknown:
        # Usually a query value with an unencoded "&" in it, which the SDK sends as is.
        raise HttpError(400, f"Invalid parameter: {unknown[0]}")
    return path, params


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        return await read_chunked(reader)
    length = headers.get("content-length", "0")
    if not length.isdigit():
        raise HttpError(400, "Bad Content-Length")
    if int(length) > MAX_BODY:
        raise HttpError(413, "Payload too large")
    return await reader.readexactly(int(length))


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        try:
            size = int((await reader.readline()).split(b";")[0], 16)
        except ValueError as exc:
            raise HttpError(400, "Bad chunk size") from exc
        if len(body) + size > MAX_BODY:
            raise HttpError(413, "Payload too large")
        if size == 0:
            await read_headers(reader)  # trailers
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readline()


def encode_reply(reply: Reply, keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {reply.status} {REASONS.get(reply.status, 'Error')}",
             f"Connection: {'keep-alive' if keep_alive else 'close'}"]
    if reply.etag is not None:
        lines.append(f"ETag: {reply.etag}")
    if reply.body is not None:
        lines += ["Content-Type: application/json; charset=utf-8", f"Content-Length: {len(reply.body)}"]
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + (reply.body or b"")


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


# --- listeners ----------------------------------------------------------------------------------

class Listener:
    """One SSE stream: the frames waiting for it, and the location it watches."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.queue: asyncio.Queue[Optional[bytes]] = asyncio.Queue(MAX_QUEUED_FRAMES)
        self.closed = False

    def send(self, event: str, path: Path, data_json: str) -> None:
        rel = json.dumps("/" + "/".join(path))
        self.offer(f'event: {event}\ndata: {{"path":{rel},"data":{data_json}}}\n\n'.encode())

    def offer(self, frame: bytes) -> None:
        if self.closed:
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            # Rather than buffer without bound, end the stream; the SDK reconnects and gets a
            # fresh snapshot in its first event.
            log.warning("rtdb stand-in: dropping a listener on %s that stopped reading", self.path)
            self.close()

    def close(self) -> None:
        """Ends the stream after discarding what is queued: nobody will read it."""
        self.closed = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


# --- the database -------------------------------------------------------------------------------

class Database:
    """All namespaces and their listeners. Only ever used from the event loop thread."""

    def __init__(self) -> None:
        self.trees: dict[str, Json] = {}
        self.listeners: dict[str, set[Listener]] = {}
        self.push_ids = tree.PushIds()

    def handle(self, req: Request) -> Reply:
        ns = check_common_params(req)
        handler = {"GET": self.get, "PUT": self.put, "DELETE": self.put, "POST": self.post,
                   "PATCH": self.patch}.get(req.method)
        if handler is None:
            raise HttpError(405, f"Method {req.method} is not supported")
        if "if-match" in req.headers and req.method not in ("PUT", "DELETE"):
            raise BadRequest("if-match is only supported on PUT and DELETE")  # as in RTDB
        reply = handler(req, ns)
        if req.params.get("print") == "silent" and reply.status == 200:
            return Reply(204, None, reply.etag)
        return reply

    def get(self, req: Request, ns: str) -> Reply:
        value = tree.get_at(self.trees.get(ns), req.path)
        tag = tree.etag(value) if wants_etag(req) or "if-none-match" in req.headers else None
        if tag is not None and req.headers.get("if-none-match") == tag:
            return Reply(304, None, tag)
        query = tree.parse_query(req.params)
        shallow = req.params.get("shallow", "false")
        if shallow not in ("true", "false"):
            raise BadRequest("shallow must be true or false")
        if shallow == "true":
            if query:
                raise BadRequest("Mixing 'shallow' and querying parameters is not supported")
            return self.reply(req, tree.shallow(value), tag)
        return self.reply(req, tree.export(query.run(value) if query else value), tag)

    def put(self, req: Request, ns: str) -> Reply:
        """PUT and DELETE (a PUT of null), both honouring ``if-match``."""
        value = tree.normalize(tree.parse_json(req.body)) if req.method == "PUT" else None
        if "if-match" in req.headers:
            current = tree.get_at(self.trees.get(ns), req.path)
            current_tag = tree.etag(current)
            if req.headers["if-match"] != current_tag:
                # The SDK's transaction() retries with the value and ETag of this reply.
                return json_reply(412, tree.export(current), etag=current_tag)
        self.commit(ns, req.path, [((), value)], "put", tree.export(value))
        tag = tree.etag(value) if wants_etag(req) or "if-match" in req.headers else None
        return self.reply(req, tree.export(value), tag)

    def post(self, req: Request, ns: str) -> Reply:
        value = tree.normalize(tree.parse_json(req.body))
        name = self.push_ids.next()
        self.commit(ns, req.path + (name,), [((), value)], "put", tree.export(value))
        return self.reply(req, {"name": name}, None)

    def patch(self, req: Request, ns: str) -> Reply:
        body = tree.parse_json(req.body)
        self.commit(ns, req.path, tree.parse_update(body), "patch", body)
        return self.reply(req, body, tree.etag(tree.get_at(self.trees.get(ns), req.path))
                          if wants_etag(req) else None)

    @staticmethod
    def reply(req: Request, value: Json, tag: Optional[str]) -> Reply:
        return json_reply(200, value, req.params.get("print") == "pretty", tag)

    def commit(self, ns: str, at: Path, entries: list[tuple[Path, Json]], event: str,
               payload: Json) -> None:
        """Writes ``entries`` (relative path, stored value) below ``at`` and tells the listeners.
        ``payload`` is what listeners at or above ``at`` receive as the event data."""
        old_root = new_root = self.trees.get(ns)
        for rel, value in entries:
            new_root = tree.set_at(new_root, at + rel, value)
        if new_root is None:
            self.trees.pop(ns, None)
        else:
            self.trees[ns] = new_root
        if not tree.same(tree.get_at(old_root, at), tree.get_at(new_root, at)):
            self.notify(ns, at, old_root, new_root, event, json.dumps(payload, separators=(",", ":")))

    def notify(self, ns: str, at: Path, old_root: Json, new_root: Json, event: str,
               data_json: str) -> None:
        for listener in self.listeners.get(ns, ()):
            watched = listener.path
            if at[:len(watched)] == watched:  # the write is at or below the listener
                listener.send(event, at[len(watched):], data_json)
            elif watched[:len(at)] == at:  # the write is above: send the listener's new value
                old, new = tree.get_at(old_root, watched), tree.get_at(new_root, watched)
                if not tree.same(old, new):
                    listener.send("put", (), json.dumps(tree.export(new), separators=(",", ":")))

    def subscribe(self, ns: str, listener: Listener) -> None:
        # Registering and queueing the snapshot in one step means no write can fall in between.
        self.listeners.setdefault(ns, set()).add(listener)
        value = tree.export(tree.get_at(self.trees.get(ns), listener.path))
        listener.send("put", (), json.dumps(value, separators=(",", ":")))

    def unsubscribe(self, ns: str, listener: Listener) -> None:
        listeners = self.listeners.get(ns, set())
        listeners.discard(listener)
        if not listeners:
            self.listeners.pop(ns, None)

    def stream_count(self) -> int:
        return sum(len(listeners) for listeners in self.listeners.values())

    def keepalive(self) -> None:
        for listeners in self.listeners.values():
            for listener in listeners:
                listener.offer(KEEPALIVE_FRAME)

    def reset(self) -> None:
        """Deletes every namespace's root, so open listeners see the data go away."""
        for ns in list(self.trees):
            self.commit(ns, (), [((), None)], "put", None)


def check_common_params(req: Request) -> str:
    """Returns the namespace after checking the parameters every request shares."""
    ns = req.params.get("ns")
    if not ns:
        # Also catches a query value containing "#": the SDK sends it raw, which cuts the URL
        # there and drops `ns` with it. Failing loudly beats reading some default namespace.
        raise HttpError(400, "Missing namespace: add ?ns=<database name> to the URL")
    if req.params.get("print", "silent") not in ("silent", "pretty"):
        raise BadRequest("print must be silent or pretty")
    return ns


def wants_etag(req: Request) -> bool:
    return req.headers.get("x-firebase-etag", "").lower() == "true"


# --- the server ---------------------------------------------------------------------------------

class Server:
    """The asyncio server; ``run()`` serves until ``stop()`` is called on the loop's thread."""

    def __init__(self, keepalive_interval: float) -> None:
        self.db = Database()
        self.keepalive_interval = keepalive_interval
        self.keepalives_held = False
        self.required_token: Optional[str] = None  # streams without "Authorization: Bearer <it>" get a 401
        self._stop = asyncio.Event()
        self._connections: dict[asyncio.Task, asyncio.StreamWriter] = {}

    def stop(self) -> None:
        self._stop.set()

    async def run(self, host: str, port: int, on_ready: Callable[[str, int], None]) -> None:
        sock = socket.create_server((host, port), backlog=ACCEPT_BACKLOG)
        server = await asyncio.start_server(self.serve_connection, sock=sock, backlog=ACCEPT_BACKLOG)
        ticker = asyncio.create_task(self.tick_keepalives())
        try:
            on_ready(*sock.getsockname()[:2])
            await self._stop.wait()
        finally:
            server.close()
            ticker.cancel()
            # Aborting the sockets ends every connection task on its own (reads see EOF, writes
            # fail, and a stream's EOF watcher closes its listener). Cancelling them instead would
            # make Python 3.11's asyncio log each one as an error.
            for writer in self._connections.values():
                writer.transport.abort()
            await asyncio.gather(ticker, *self._connections, return_exceptions=True)
            await server.wait_closed()

    async def tick_keepalives(self) -> None:
        # One timer for all listeners instead of one per stream.
        while True:
            await asyncio.sleep(self.keepalive_interval)
            if not self.keepalives_held:
                self.db.keepalive()

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            await self.serve_requests(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up mid-request; there is nobody to answer
        finally:
            del self._connections[task]
            writer.close()

    async def serve_requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                req = await read_request(reader)
            except (HttpError, ValueError) as exc:  # ValueError: a line over the reader's limit
                writer.write(encode_reply(exception_reply(exc), keep_alive=False))
                await writer.drain()
                return
            if req is None:
                return
            if req.wants_stream:
                await self.stream(req, reader, writer)
                return
            writer.write(encode_reply(self.answer(req), req.keep_alive))
            await writer.drain()
            if not req.keep_alive:
                return

    def answer(self, req: Request) -> Reply:
        try:
            return self.db.handle(req)
        except (HttpError, BadRequest) as exc:
            return exception_reply(exc)
        except Exception:  # a stand-in bug: report it to the client instead of dropping the connection
            log.exception("rtdb stand-in: %s %s failed", req.method, "/".join(req.path))
            return error_reply(500, "Internal error in the rtdb stand-in (see its log)")

    async def stream(self, req: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            ns = check_common_params(req)
            if tree.parse_query(req.params) or "shallow" in req.params:
                raise BadRequest("Query parameters are not supported on streaming requests")
            if self.required_token and req.headers.get("authorization") != f"Bearer {self.required_token}":
                raise HttpError(401, "Unauthorized request.")
        except (HttpError, BadRequest) as exc:
            writer.write(encode_reply(exception_reply(exc), keep_alive=False))
            await writer.drain()
            return
        listener = Listener(req.path)
        self.db.subscribe(ns, listener)
        watcher = asyncio.create_task(close_on_eof(reader, listener))
        try:
            writer.write(SSE_HEAD)
            while (frame := await listener.queue.get()) is not None:
                writer.write(chunk(frame))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        finally:
            watcher.cancel()
            self.db.unsubscribe(ns, listener)


async def close_on_eof(reader: asyncio.StreamReader, listener: Listener) -> None:
    """The SDK sends nothing on a stream, so reading only tells us when it hangs up. That frees the
    listener at once instead of at the next failed write."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(4096):
            continue
    listener.close()


# --- public API ---------------------------------------------------------------------------------

class RtdbStandin:
    """The stand-in in a background thread with its own event loop. Typical use::

        server = RtdbStandin().start()
        os.environ["FIREBASE_DATABASE_EMULATOR_HOST"] = server.url.removeprefix("http://")
        ...
        server.stop()

    After ``stop()``, ``start()`` serves again (empty) on the same port.

    ``keepalive_interval`` matters to tests: the SDK's ``ListenerRegistration.close()`` only
    returns once the server next writes to that stream, so it takes up to this long.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, keepalive_interval: float = 1.0) -> None:
        self.host = host
        self.port = port
        self._keepalive_interval = keepalive_interval
        self._server: Optional[Server] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> "RtdbStandin":
        """Starts serving; returns once the socket accepts connections."""
        if self._thread is not None:
            raise RuntimeError("RtdbStandin is already started")
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._server = Server(self._keepalive_interval)  # a fresh one, so stop() then start() works
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="rtdb-standin", daemon=True)
        self._thread.start()
        try:
            self.port = ready.result(timeout=30)
        except OSError:
            self._thread.join()
            self._thread = None
            raise
        return self

    def _run(self, ready: concurrent.futures.Future[int]) -> None:
        assert self._loop is not None and self._server is not None
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(
                self._server.run(self.host, self.port, lambda _, port: ready.set_result(port)))
        except OSError as exc:
            if ready.done():
                raise
            ready.set_exception(exc)  # could not bind: start() re-raises it
        finally:
            self._loop.close()

    def stop(self) -> None:
        """Stops the server and drops every connection, listeners included."""
        if self._thread is None or self._loop is None or self._server is None:
            return
        self._loop.call_soon_threadsafe(self._server.stop)
        self._thread.join()
        self._thread = None

    def reset(self) -> None:
        """Wipes all namespaces. Open listeners stay connected and see their data deleted."""
        self._call(Database.reset)

    def active_streams(self) -> int:
        """How many SSE listeners the server currently holds open."""
        return self._call(Database.stream_count)

    def end_streams(self) -> None:
        """Ends every open stream cleanly (as a server restart or a load balancer would)."""
        self._call(lambda db: [listener.close() for listeners in db.listeners.values() for listener in listeners])

    def send_to_streams(self, event: str, data_json: str = "null") -> None:
        """One event (``auth_revoked``, ``cancel``...) to every stream; the real server then ends the stream."""
        frame = f"event: {event}\ndata: {data_json}\n\n".encode()
        self._call(lambda db: [listener.offer(frame) for listeners in db.listeners.values() for listener in listeners])

    def hold_keepalives(self, held: bool) -> None:
        self._call(lambda db: setattr(self._server, "keepalives_held", held))

    def require_token(self, token: Optional[str]) -> None:
        self._call(lambda db: setattr(self._server, "required_token", token))

    def _call(self, fn: Callable[[Database], T]) -> T:
        # The database belongs to the loop thread; run fn there instead of sharing it.
        if self._thread is None or self._loop is None or self._server is None:
            raise RuntimeError("RtdbStandin is not running")
        db = self._server.db

        async def call() -> T:
            return fn(db)
        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout=30)

    def __enter__(self) -> "RtdbStandin":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Firebase Realtime Database stand-in (dev/test only)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=9000, help="port (0 picks a free one)")
    parser.add_argument("--keepalive", type=float, default=1.0, help="seconds between SSE keep-alives")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        asyncio.run(serve_foreground(args.host, args.port, args.keepalive))
    except OSError as exc:
        log.error("rtdb stand-in: cannot listen on %s:%s: %s", args.host, args.port, exc)
        return 1
    return 0


async def serve_foreground(host: str, port: int, keepalive_interval: float) -> None:
    server = Server(keepalive_interval)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.stop)

    def announce(bound_host: str, bound_port: int) -> None:
        print(f"rtdb stand-in listening on http://{bound_host}:{bound_port}", flush=True)
    await server.run(host, port, announce)


if __name__ == "__main__":
    raise SystemExit(main())
