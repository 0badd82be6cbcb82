"""``EventConsumer``: one user's (or one chat thread's) events, in ``seq`` order, across reconnects.

Two transports:

* ``"ws"`` (default): ``/ws`` with auto-reconnect (exponential backoff with jitter), an application ping
  (``{"type":"ping"}`` → ``pong``; a missing pong drops the connection) and ``since=<last seq>`` on every reconnect,
  so the gateway replays what was published meanwhile from the channel's history.
* ``"redis"``: SUBSCRIBE to the channel on the gateway's Redis (what the Reflex bus consumer did); after every
  (re)subscribe and on any gap, the missed events are read from the same history the gateway replays from.

Either way an event is delivered once, in order, and a gap the history cannot cover (trimmed, expired, Redis lost its
data) is never silent: a ``recovery.failed`` event goes to the sink and to ``on_resync``, which should re-load the
state from the source (e.g. ``get_unread_notifications``); numbering continues after its ``current_seq``.

Events go to ``on_event`` (sync or async callable) and/or ``queue`` (an ``asyncio.Queue``; a bounded queue slows
reading, and a consumer left far behind is closed by the gateway with 4008 and resumes from history). The
connection is refused for good on 4400 (bad request), 4403 (forbidden) and 4401 (unauthenticated; retried a few
times when ``token`` is a callable that can mint a fresh one): ``run()`` then raises ``ConsumerRefused``.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Literal, Sequence
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from . import _redis_history
from .errors import ConsumerRefused
from .rpc import AsyncRpcClient, RpcClient, default_settings

log = logging.getLogger("gateway_client.events")

Event = dict[str, Any]
Callback = Callable[[Event], Any]
TokenSource = str | Callable[[], "str | Awaitable[str]"] | None

CLOSE_BAD_REQUEST, CLOSE_UNAUTHENTICATED, CLOSE_FORBIDDEN = 4400, 4401, 4403
_MAX_AUTH_RETRIES = 3  # consecutive 4401s tolerated when a token provider may hand out a fresh token
_PING = json.dumps({"type": "ping"})


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays: exponential with full jitter, reset once a connection has worked."""

    initial_s: float = 0.25
    max_s: float = 10.0

    def delay(self, failures: int) -> float:
        return random.uniform(0, min(self.max_s, self.initial_s * 2 ** failures))  # noqa: S311 - jitter


@dataclass
class ConsumerStats:
    connects: int = 0  # connections that became ready (the first one included)
    duplicates_dropped: int = 0  # events at or below last_seq (history replay overlapping the live stream)
    recoveries_failed: int = 0


class EventConsumer:
    def __init__(
        self,
        uid: str,
        *,
        client: RpcClient | AsyncRpcClient | None = None,
        url: str | None = None,
        token: TokenSource = None,
        space_code: str | None = None,
        thread_key: str | None = None,
        mode: Literal["chats", "job_chats"] | None = None,
        since: int | None = None,
        on_event: Callback | None = None,
        queue: asyncio.Queue | None = None,
        on_resync: Callback | None = None,
        kinds: Sequence[str] | None = None,
        transport: Literal["ws", "redis"] = "ws",
        redis_url: str | None = None,
        redis_cluster: bool = False,
        channel_prefix: str = "user:",
        chat_channel_prefix: str = "chat:",
        fanout_channel: str | None = "fanout:user",
        ping_interval_s: float = 20.0,
        pong_timeout_s: float = 10.0,
        open_timeout_s: float = 10.0,
        backoff: Backoff = Backoff(),
    ) -> None:
        """``uid`` (and ``space_code`` + ``thread_key`` for one chat thread) names the channel. ``url`` is the
        gateway's base URL (default: the client's, or ``configure()``/GATEWAY_URL); ``token`` a bearer token or a
        callable returning one (default: the client's / the configured one; none at all only works from
        LISTENERS_WS_TRUSTED_NETWORKS). ``since``: resume after this seq at the first connection. ``kinds``: deliver
        only event types starting with these prefixes (``("notif", "msg")``); ordering covers every event.
        ``redis_cluster``: the gateway's Redis is a cluster (its LISTENERS_REDIS_CLUSTER): history is read through a
        cluster client, while SUBSCRIBE stays on the ``redis_url`` node (a cluster broadcasts classic PUBLISH)."""
        if bool(space_code) != bool(thread_key):
            raise ValueError("give both space_code and thread_key, or neither")
        if transport == "redis" and not redis_url:
            raise ValueError('transport="redis" needs redis_url (the gateway\'s REDIS_URL)')
        self.uid = uid
        self.space_code, self.thread_key, self.mode = space_code, thread_key, mode
        self.channel = (f"{chat_channel_prefix}{uid}:{space_code}:{thread_key}" if space_code
                        else f"{channel_prefix}{uid}")
        # Redis transport: a fan-out to many users is one message on the gateway's LISTENERS_FANOUT_CHANNEL, not one
        # on each user's channel; the consumer listens there too and reads its own event from history.
        self.fanout_channel = None if space_code else fanout_channel
        base_url, default_token = default_settings(client)
        self._base_url = (url or base_url or "").rstrip("/")
        if transport == "ws" and not self._base_url:
            raise ValueError("no gateway URL: pass url= or client=, call configure(), or set GATEWAY_URL")
        self._token: TokenSource = token if token is not None else default_token
        self.transport = transport
        self.redis_url = redis_url
        self.redis_cluster = redis_cluster
        self.on_event, self.queue, self.on_resync = on_event, queue, on_resync
        self.kinds = tuple(kinds) if kinds else None
        self.ping_interval_s, self.pong_timeout_s, self.open_timeout_s = ping_interval_s, pong_timeout_s, open_timeout_s
        self.backoff = backoff
        self.last_seq: int | None = since
        self.stats = ConsumerStats()
        self._epoch: str | None = None  # Redis transport: the history epoch last_seq belongs to
        self._ready = asyncio.Event()
        self._was_ready = False
        self._stopping = False
        self._task: asyncio.Task | None = None

    # --- lifecycle ----------------------------------------------------------------------------------------------
    async def start(self) -> "EventConsumer":
        """Run in a background task; see ``wait_ready``."""
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self.run(), name=f"event-consumer:{self.channel}")
        return self

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, ConsumerRefused):
                pass
            self._task = None
        self._ready.clear()

    async def __aenter__(self) -> "EventConsumer":
        return await self.start()

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.stop()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Until the gateway delivers on the current connection (subscribed, missed events replayed)."""
        waiter = asyncio.ensure_future(self._ready.wait())
        pending = {waiter}
        if self._task is not None:
            pending.add(self._task)
        done, _ = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self._task is not None and self._task in done:
            self._task.result()  # raises ConsumerRefused (or the bug that ended it)
        if not self._ready.is_set():
            raise TimeoutError(f"event consumer for {self.channel} not ready within {timeout} s")

    async def run(self) -> None:
        """Consume until cancelled (or refused for good)."""
        failures = auth_failures = 0
        while not self._stopping:
            self._ready.clear()
            code = await (self._session_ws() if self.transport == "ws" else self._session_redis())
            if self._ready.is_set():
                failures = 0
            else:
                failures += 1
            if code == CLOSE_UNAUTHENTICATED and callable(self._token) and auth_failures < _MAX_AUTH_RETRIES:
                auth_failures += 1
            elif code in (CLOSE_BAD_REQUEST, CLOSE_UNAUTHENTICATED, CLOSE_FORBIDDEN):
                log.error("event_consumer_refused", extra={"channel": self.channel, "close_code": code})
                raise ConsumerRefused(code)
            else:
                auth_failures = 0
            delay = self.backoff.delay(failures)
            log.info("event_consumer_reconnecting", extra={"channel": self.channel, "in_s": round(delay, 3),
                                                           "close_code": code})
            await asyncio.sleep(delay)

    # --- delivery (both transports) ----------------------------------------------------------------------------
    async def _connection_ready(self) -> None:
        """The current connection delivers (first frame on /ws, or SUBSCRIBE confirmed and history read)."""
        if self._ready.is_set():
            return
        reconnect_without_position = self._was_ready and self.last_seq is None
        self._ready.set()
        self._was_ready = True
        self.stats.connects += 1
        if reconnect_without_position and self.transport == "ws":
            # No event was seen before the drop, so there is no seq to resume from and whatever was published
            # while disconnected can't be replayed. Say so rather than risk a silent gap.
            await self._recovery_failed(self._local_recovery_failed(
                None, None, "reconnected before any event was received: position unknown"))

    async def _accept(self, event: Event) -> Literal["delivered", "duplicate", "gap", "ignored"]:
        """Deliver an event in order; report a gap instead of delivering past it."""
        seq = event.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            log.debug("event_consumer_frame_ignored", extra={"type": event.get("type")})  # not an event envelope
            return "ignored"
        if self.last_seq is not None:
            if seq <= self.last_seq:
                self.stats.duplicates_dropped += 1
                return "duplicate"
            if seq > self.last_seq + 1:
                return "gap"
        await self._deliver(event)
        self.last_seq = seq
        return "delivered"

    async def _deliver(self, event: Event) -> None:
        event_type = str(event.get("type", ""))
        if self.kinds and event_type != "recovery.failed" and not event_type.startswith(self.kinds):
            return
        if self.queue is not None:
            await self.queue.put(event)
        if self.on_event is not None:
            await _call_hook(self.on_event, event, "on_event")

    async def _recovery_failed(self, event: Event) -> None:
        current = event.get("payload", {}).get("current_seq")
        if isinstance(current, int):
            self.last_seq = current
        self.stats.recoveries_failed += 1
        log.warning("event_recovery_failed", extra={"channel": self.channel, "payload": event.get("payload")})
        await self._deliver(event)
        if self.on_resync is not None:
            await _call_hook(self.on_resync, event, "on_resync")

    def _local_recovery_failed(self, since: int | None, current_seq: int | None, reason: str) -> Event:
        """The gateway's ``recovery.failed`` shape, for gaps the client itself detects."""
        return {
            "type": "recovery.failed",
            "uid": self.uid,
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "payload": {"channel": self.channel, "since": since, "current_seq": current_seq,
                        "reason": f"{reason}; re-sync from the source"},
            "event_id": uuid.uuid4().hex,
        }

    # --- WebSocket transport -----------------------------------------------------------------------------------
    def _ws_url(self) -> str:
        scheme, _, rest = self._base_url.partition("://")
        query: dict[str, Any] = {"uid": self.uid}
        if self.space_code:
            query.update(space_code=self.space_code, thread_key=self.thread_key)
        if self.mode:
            query["mode"] = self.mode
        if self.last_seq is not None:
            query["since"] = self.last_seq
        return f"{'wss' if scheme in ('https', 'wss') else 'ws'}://{rest}/ws?{urlencode(query)}"

    async def _current_token(self) -> str | None:
        token = self._token
        if callable(token):
            token = token()
            if inspect.isawaitable(token):
                token = await token
        return token or None

    async def _session_ws(self) -> int | None:
        """One connection, until it ends; returns the server's close code (None: network failure)."""
        token = await self._current_token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            async with connect(self._ws_url(), additional_headers=headers, open_timeout=self.open_timeout_s,
                               ping_interval=None, close_timeout=2, max_size=16 * 2**20, max_queue=64) as ws:
                return await self._read_ws(ws)
        except (OSError, asyncio.TimeoutError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
            log.info("event_consumer_connect_failed", extra={"channel": self.channel, "error": type(exc).__name__})
            return None
        except InvalidURI as exc:
            raise ConsumerRefused(CLOSE_BAD_REQUEST, f"invalid URL ({exc})") from None

    async def _read_ws(self, ws: ClientConnection) -> int | None:
        pong = asyncio.Event()
        pinger = asyncio.get_running_loop().create_task(self._ping_ws(ws, pong))
        try:
            async for raw in ws:
                message = _parse(raw)
                if message is None:
                    continue
                await self._connection_ready()  # the first frame (the first ping's pong at the latest) proves it
                kind = message.get("type")
                if kind == "pong":
                    pong.set()
                elif kind == "recovery.failed":
                    await self._recovery_failed(message)
                elif await self._accept(message) == "gap":
                    # The gateway fills gaps itself; should one reach us anyway, reconnecting with since makes it
                    # replay the missing events (or say it can't).
                    log.warning("event_gap_reconnecting", extra={"channel": self.channel, "last_seq": self.last_seq,
                                                                 "seq": message.get("seq")})
                    await ws.close()
                    break
        except ConnectionClosed:
            pass
        finally:
            pinger.cancel()
        return ws.close_code

    async def _ping_ws(self, ws: ClientConnection, pong: asyncio.Event) -> None:
        """Ping at once (its pong marks the connection ready), then every ping_interval_s; no pong → reconnect."""
        try:
            while True:
                pong.clear()
                await ws.send(_PING)
                try:
                    await asyncio.wait_for(pong.wait(), self.pong_timeout_s)
                except asyncio.TimeoutError:  # not yet the builtin TimeoutError on Python 3.10
                    log.warning("event_consumer_pong_timeout", extra={"channel": self.channel})
                    await ws.close(code=1001, reason="pong timeout")
                    return
                await asyncio.sleep(self.ping_interval_s)
        except ConnectionClosed:
            return

    # --- Redis transport ---------------------------------------------------------------------------------------
    async def _session_redis(self) -> int | None:
        import redis
        import redis.asyncio as aioredis

        client = aioredis.from_url(self.redis_url, health_check_interval=self.ping_interval_s,
                                   socket_connect_timeout=self.open_timeout_s)
        if self.redis_cluster:
            from redis.asyncio.cluster import RedisCluster

            history = RedisCluster.from_url(self.redis_url, socket_connect_timeout=self.open_timeout_s)
        else:
            history = client
        pubsub = client.pubsub()
        channels = [self.channel] + ([self.fanout_channel] if self.fanout_channel else [])
        try:
            await pubsub.subscribe(*channels)
            await self._confirmed(pubsub, len(channels))
            await self._catch_up_redis(history)  # after SUBSCRIBE took effect: anything newer arrives live
            await self._connection_ready()
            while not self._stopping:
                message = await pubsub.get_message(timeout=1.0)
                if not message or message.get("type") != "message":
                    continue
                if _channel_name(message) == self.fanout_channel:
                    if self._names_me(message["data"]):
                        await self._catch_up_redis(history)  # the fanned-out event is in this user's history
                    continue
                event = _parse(message["data"])
                if event is None:
                    continue
                if await self._accept(event) == "gap":
                    await self._catch_up_redis(history)
                    await self._accept(event)  # delivered now, or a duplicate of what the history returned
        except (redis.RedisError, OSError, asyncio.TimeoutError, TimeoutError) as exc:
            log.info("event_consumer_redis_failed", extra={"channel": self.channel, "error": type(exc).__name__})
        finally:
            await pubsub.aclose()
            await client.aclose()
            if history is not client:
                await history.aclose()
        return None

    async def _confirmed(self, pubsub: Any, channels: int) -> None:
        """Wait for Redis to confirm each SUBSCRIBE (it does so before sending any message of the channel)."""
        deadline = asyncio.get_running_loop().time() + self.open_timeout_s
        while asyncio.get_running_loop().time() < deadline:
            message = await pubsub.get_message(timeout=0.5)
            if message is not None and message.get("type") == "subscribe":
                channels -= 1
                if channels == 0:
                    return
        raise TimeoutError("SUBSCRIBE not confirmed")

    def _names_me(self, raw: bytes | str) -> bool:
        batch = _parse(raw)
        uids = batch.get("uids") if batch is not None else None
        return isinstance(uids, list) and self.uid in uids

    async def _catch_up_redis(self, client: Any) -> None:
        if self.last_seq is None:  # first subscription and no since: start from the channel's current position
            position = await _redis_history.position(client, self.channel)
            self.last_seq, self._epoch = position.seq, position.epoch
            return
        since = self.last_seq
        position, entries = await _redis_history.read(client, self.channel, after=since)
        events = _redis_history.recover(since, position, entries, self._epoch)
        if events is None:
            reason = "history was reset (new epoch)" if self._epoch not in (None, position.epoch) else \
                "history does not cover the gap"
            self._epoch = position.epoch
            await self._recovery_failed(self._local_recovery_failed(since, position.seq, reason))
            return
        self._epoch = position.epoch
        for raw in events:
            await self._accept(json.loads(raw))


def _channel_name(message: dict[str, Any]) -> str:
    channel = message.get("channel")
    return channel.decode() if isinstance(channel, bytes) else str(channel)


def _parse(raw: str | bytes) -> Event | None:
    try:
        message = json.loads(raw)
    except ValueError:
        log.warning("event_consumer_bad_frame")
        return None
    return message if isinstance(message, dict) else None


async def _call_hook(hook: Callback, event: Event, name: str) -> None:
    try:
        result = hook(event)
        if inspect.isawaitable(result):
            await result
    except Exception:  # noqa: BLE001 - a failing handler must not stop the stream; it is logged with its traceback
        log.exception("event_consumer_hook_failed", extra={"hook": name, "type": event.get("type")})
