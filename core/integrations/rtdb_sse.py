"""Realtime Database streaming on an asyncio loop: the REST + server-sent-events protocol that
``firebase_admin.db.Reference.listen()`` speaks, without its thread per listener.

One ``RtdbStreamClient`` (one httpx connection pool, one TLS context) carries any number of ``SseListener`` tasks.
A listener ``GET``s ``{path}.json`` with ``Accept: text/event-stream`` and reads events (devstack/rtdb_server.py
serves the same protocol):

* ``put`` / ``patch``: ``{"path": ..., "data": ...}``, handed to the listener's handler;
* ``keep-alive``: nothing to deliver, but it proves the stream alive: ``stalled()`` uses it;
* ``auth_revoked``: the token expired; the server ends the stream, so a fresh token is fetched and it reconnects;
* ``cancel``: the server refuses this location for good (security rules): ``failure`` is set and it stops.

A stream the server ends, or a connection that fails, is opened again with a backoff; the reconnect's first ``put``
carries the whole node again (the caller's mirror makes that harmless, see workflows/rtdb_streams.py). A ``401``
is answered with a fresh token. Any other 4xx is final (``failure``).
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs, urlparse

import firebase_admin
import httpx
import structlog
from google.auth.transport.requests import Request as GoogleAuthRequest

log = structlog.get_logger(__name__)

EMULATOR_HOST_ENV = "FIREBASE_DATABASE_EMULATOR_HOST"  # what firebase_admin.db reads
_EMULATOR_TOKEN = "owner"  # the admin token the RTDB emulator accepts (firebase_admin uses the same)
_BACKOFF_FIRST_S, _BACKOFF_MAX_S = 0.25, 10.0
_CONNECT_TIMEOUT_S = 10.0
# Connections being opened at once (TCP + TLS + the first snapshot's headers): enough to attach thousands of users in
# seconds without a connect storm on a restarted server.
DEFAULT_MAX_CONNECTING = 64

# (stale token the server refused, or None) -> the token to send (None: send none)
TokenProvider = Callable[[str | None], Awaitable[str | None]]
# (event type, path below the listened one, data), on the loop: keep it short
EventHandler = Callable[[str, str, Any], None]


def static_token(token: str | None) -> TokenProvider:
    async def provide(stale: str | None) -> str | None:
        return token
    return provide


def credential_token(credential: Any) -> TokenProvider:
    """The access token of a google-auth credential (the Firebase app's), refreshed when it expires or when the
    server refused it. One refresh at a time for every stream: a 401 on a thousand streams refreshes once."""
    lock = asyncio.Lock()

    async def provide(stale: str | None) -> str | None:
        async with lock:
            if not credential.valid or (stale is not None and credential.token == stale):
                await asyncio.to_thread(credential.refresh, GoogleAuthRequest())  # blocking HTTP: off the loop
            return credential.token
    return provide


@dataclass(frozen=True)
class RtdbEndpoint:
    """Where streams go: ``base_url`` + ``{path}.json?{params}``, authorized by ``token``."""

    base_url: str
    params: dict[str, str]
    token: TokenProvider = field(compare=False)

    @classmethod
    def for_app(cls, app: firebase_admin.App) -> "RtdbEndpoint":
        """The database the app's ``firebase_admin.db`` references address, by the SDK's own rules: an ``http``
        ``databaseURL`` is an emulator named by its ``?ns=``; else ``FIREBASE_DATABASE_EMULATOR_HOST`` names the
        emulator and the URL's first label the namespace; else the URL's host, with the app credential's token."""
        url = app.options.get("databaseURL")
        parsed = urlparse(url or "")
        if not parsed.netloc:
            raise ValueError(f"Invalid database URL: {url!r}")
        emulator_host = os.environ.get(EMULATOR_HOST_ENV)
        if parsed.scheme != "https":
            namespaces = parse_qs(parsed.query).get("ns")
            if parsed.scheme != "http" or not namespaces or len(namespaces) != 1 or not namespaces[0]:
                raise ValueError(f"Invalid database URL: {url!r}")
            base_url, params = f"http://{parsed.netloc}", {"ns": namespaces[0]}
        elif emulator_host:
            base_url, params = f"http://{emulator_host}", {"ns": parsed.netloc.split(".")[0]}
        else:
            base_url, params = f"https://{parsed.netloc}", {}
        override = app.options.get("databaseAuthVariableOverride", "_admin_")
        if override not in ("_admin_", {}):
            params["auth_variable_override"] = json.dumps(override, separators=(",", ":"))
        if base_url.startswith("http://"):
            return cls(base_url, params, static_token(_EMULATOR_TOKEN))
        return cls(base_url, params, credential_token(app.credential.get_credential()))


class RtdbStreamClient:
    """The connection pool and connect budget that a worker's listeners share. Build it on the loop it serves
    (httpx binds its pool to the loop that first uses it); ``listen`` and ``SseListener.close`` work from any
    thread."""

    def __init__(self, endpoint: RtdbEndpoint, *, max_connecting: int = DEFAULT_MAX_CONNECTING) -> None:
        self.endpoint = endpoint
        self.loop = asyncio.get_running_loop()
        # One connection per stream (HTTP/1.1 SSE): no cap on connections, none kept idle.
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(_CONNECT_TIMEOUT_S, read=None),  # a silent stream is the stall rule's business
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
            headers={"Accept": "text/event-stream", "Cache-Control": "no-cache"},
        )
        self.connecting = asyncio.Semaphore(max_connecting)
        self.listeners: set[SseListener] = set()

    def listen(self, path: str, handler: EventHandler) -> "SseListener":
        """Start streaming ``path``; events go to ``handler`` (on the loop) until ``close()``. Never blocks: the
        connection is opened on the loop, within the connect budget."""
        listener = SseListener(self, path, handler)
        self.loop.call_soon_threadsafe(listener.start)
        return listener

    async def aclose(self) -> None:
        listeners = list(self.listeners)
        for listener in listeners:
            listener.close()
        await asyncio.gather(*(listener.task for listener in listeners if listener.task), return_exceptions=True)
        await self.http.aclose()


class _Reconnect(Exception):
    """End this connection and open another (after the backoff unless the stream had delivered)."""


class _Final(Exception):
    """The server refused this stream for good."""


class SseListener:
    """One streamed location. ``failure`` is None while it delivers or reconnects; ``close()`` stops it."""

    def __init__(self, client: RtdbStreamClient, path: str, handler: EventHandler) -> None:
        self._client = client
        self.path = "/" + path.strip("/")
        self._handler = handler
        self.task: asyncio.Task | None = None
        self.closed = False
        self.failure: str | None = None
        self.connects = 0  # connections opened (tests and the bench read it)
        self.last_frame_at = time.monotonic()
        self.keepalive_gap: float | None = None  # seconds between the last frame and the keep-alive after it
        self._url = f"{client.endpoint.base_url}{self.path.rstrip('/')}.json"
        self._stale_token: str | None = None

    def stalled(self, now: float, stall_s: float) -> bool:
        """Silent for two keep-alive periods and at least ``stall_s``, on a stream whose server sends keep-alives
        (Firebase: about every 30 s; the stand-in: ``--keepalive``). A server that sends none is never stalled."""
        if self.keepalive_gap is None:
            return False
        return now - self.last_frame_at > max(stall_s, 2 * self.keepalive_gap)

    def start(self) -> None:
        """On the loop (``listen`` schedules it)."""
        if not self.closed:
            self._client.listeners.add(self)
            self.task = self._client.loop.create_task(self._run())

    def close(self) -> None:
        """Stop now (any thread): the connection goes with the task; no handler call starts after this."""
        self.closed = True
        self._client.loop.call_soon_threadsafe(self._cancel)

    def _cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _run(self) -> None:
        delay = _BACKOFF_FIRST_S
        try:
            while not self.closed:
                try:
                    if await self._stream_once():
                        delay = _BACKOFF_FIRST_S
                        continue  # the server ended a stream that worked: resume at once
                except _Final as exc:
                    self.failure = "cancelled" if str(exc) == "cancel" else "error"
                    log.warning("rtdb_stream_refused", path=self.path, reason=str(exc))
                    return
                except (_Reconnect, httpx.HTTPError, OSError, ValueError) as exc:
                    log.info("rtdb_stream_reconnecting", path=self.path, error=type(exc).__name__,
                             detail=str(exc)[:200], retry_in_s=round(delay, 2))
                except Exception:  # noqa: BLE001 - a protocol surprise: the owner's watchdog replaces the stream
                    self.failure = "error"
                    log.exception("rtdb_stream_failed", path=self.path)
                    return
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, _BACKOFF_MAX_S)
        finally:
            self._client.listeners.discard(self)

    async def _stream_once(self) -> bool:
        """One connection until the server ends it; True if it delivered an event."""
        token = await self._client.endpoint.token(self._stale_token)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = self._client.http.build_request("GET", self._url, params=self._client.endpoint.params,
                                                  headers=headers)
        async with self._client.connecting:  # released once the headers are in: then the stream only reads
            response = await self._client.http.send(request, stream=True)
        try:
            self.connects += 1
            self._check_status(response, token)
            self._stale_token = None
            return await self._read(response, token)
        finally:
            await response.aclose()

    def _check_status(self, response: httpx.Response, token: str | None) -> None:
        status = response.status_code
        if status == 200:
            return
        if status == 401:
            self._stale_token = token  # the next connect asks for a fresh token
            raise _Reconnect("401")
        if status in (301, 302, 303, 307, 308) and "location" in response.headers:
            # A namespace served elsewhere: follow it ourselves, keeping the Authorization header (as the SDK's
            # session does) and the new address for later reconnects.
            self._url = str(response.url.join(response.headers["location"]).copy_with(query=None))
            raise _Reconnect(f"redirected ({status})")
        if status == 429 or status >= 500:
            raise _Reconnect(str(status))
        raise _Final(f"HTTP {status}")

    async def _read(self, response: httpx.Response, token: str | None) -> bool:
        delivered = False
        event, data = "", []
        async for line in response.aiter_lines():
            if line:
                name, _, value = line.partition(":")
                if name == "event":
                    event = value.strip()
                elif name == "data":
                    data.append(value[1:] if value.startswith(" ") else value)
                continue
            if event or data:
                delivered = self._dispatch(event, "\n".join(data), token) or delivered
            event, data = "", []
        return delivered

    def _dispatch(self, event: str, data: str, token: str | None) -> bool:
        now = time.monotonic()
        if event == "keep-alive":
            self.keepalive_gap = now - self.last_frame_at
            self.last_frame_at = now
            return False
        self.last_frame_at = now
        if event in ("put", "patch"):
            payload = json.loads(data)
            if self.closed:
                return True
            try:
                self._handler(event, payload["path"], payload["data"])
            except Exception:  # a handler bug must not end the stream
                log.exception("rtdb_event_handler_failed", path=self.path)
            return True
        if event == "auth_revoked":
            self._stale_token = token
            raise _Reconnect("auth_revoked")
        if event == "cancel":
            raise _Final("cancel")
        return False  # an event this client does not know: ignored, as the SDK does
