"""Per-process delivery: ONE Redis pub/sub connection feeds every local socket.

Sockets register for a channel (``user:{uid}`` or one chat thread); the dispatcher SUBSCRIBEs on the first local
socket of a channel and UNSUBSCRIBEs after the last, and hands each message to the sockets without awaiting them
(each writes it now or queues it, realtime/consumers.py), so one slow client can never hold up the others. If the
Redis connection drops, it reconnects with backoff, resubscribes everything and asks each socket to catch up from
history, so the gap is filled (or reported as ``recovery.failed``), never silent.

Besides the sockets' channels, the connection always listens to two process-wide channels: ``ws:control`` (staff
actions, realtime/control.py) and the fan-out channel, where one message carries one event for many users
(realtime/fanout.py) and is turned here into each local recipient's envelope.

This is the measured fast path (README, "Choices, by measurement": raw pub/sub delivered 100 % at the lowest
latency, RedisChannelLayer dropped about half at 2,000 ev/s).

On a Redis Cluster the connection goes to one node (classic PUBLISH reaches every node): the one that owns
``ws:control``'s slot, so that a staff disconnect's PUBLISH counts this process. When that node fails, the dispatcher
moves to another node (re-reading the topology: a promoted replica owns the slot now), resubscribes and catches up.
"""
from __future__ import annotations

import asyncio
from typing import Protocol

import redis
import structlog
from redis.asyncio.client import PubSub
from django.conf import settings

from core.integrations.redis import get_async_redis, is_cluster, new_async_subscriber
from core.metrics import USERS_ONLINE, observe_pubsub_lag

from . import control, fanout, presence
from .channels import user_channel
from .control import CONTROL_CHANNEL

log = structlog.get_logger(__name__)

_NODE_POLL_TIMEOUT_S = 2.0  # one CLUSTER INFO to the subscribed node, while waiting for the cluster after a move


class Subscriber(Protocol):
    def deliver(self, message: bytes, seq: int | None = None) -> None: ...  # seq: the event's, when already known

    def resync(self) -> None: ...

    def control(self, action: str) -> None: ...


class _ReconnectAwarePubSub(PubSub):
    """redis-py reconnects and resubscribes by itself; we also need to know it happened, to fill the gap."""

    reconnected = False

    async def on_connect(self, connection) -> None:  # noqa: ANN001 - redis-py callback signature
        await super().on_connect(connection)
        self.reconnected = True


class Dispatcher:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._pubsub: _ReconnectAwarePubSub | None = None  # connected on the first subscribe
        self._node_attempt = 0  # cluster: which node to subscribe on next (0: the owner of ws:control's slot)
        self._node_client: redis.asyncio.Redis | None = None
        self._reader: asyncio.Task | None = None
        self._maintainer: asyncio.Task | None = None
        self._members: set[tuple[str, str]] = set()  # (uid, presence member) of this process's sockets
        self._sockets_by_uid: dict[str, set[Subscriber]] = {}  # for control messages (staff disconnects)
        self._lock = asyncio.Lock()
        self._process_channels = {CONTROL_CHANNEL: self._handle_control, settings.LISTENERS_FANOUT_CHANNEL: self._fan_out}

    async def _connect(self) -> _ReconnectAwarePubSub:
        client = await new_async_subscriber(near_channel=CONTROL_CHANNEL, attempt=self._node_attempt)
        self._node_client = client
        self._pubsub = _ReconnectAwarePubSub(client.connection_pool, ignore_subscribe_messages=True)
        return self._pubsub

    async def subscribe(self, channel: str, subscriber: Subscriber) -> None:
        async with self._lock:
            if self._pubsub is None:
                await self._connect()
            for process_channel in self._process_channels:
                if process_channel not in self._subscribers:
                    self._subscribers[process_channel] = set()
                    await self._pubsub.subscribe(process_channel)
            members = self._subscribers.setdefault(channel, set())
            members.add(subscriber)
            if len(members) == 1:
                await self._pubsub.subscribe(channel)
            loop = asyncio.get_running_loop()
            if self._reader is None or self._reader.done():
                self._reader = loop.create_task(self._read_forever(), name="ws-dispatcher")
                self._reader.add_done_callback(_log_unexpected_end)
            if self._maintainer is None or self._maintainer.done():
                self._maintainer = loop.create_task(self._maintain_presence_forever(), name="presence-maintainer")
                self._maintainer.add_done_callback(_log_unexpected_end)

    async def unsubscribe(self, channel: str, subscriber: Subscriber) -> None:
        async with self._lock:
            members = self._subscribers.get(channel)
            if not members:
                return
            members.discard(subscriber)
            if not members:
                del self._subscribers[channel]
                try:
                    await self._pubsub.unsubscribe(channel)
                except (redis.RedisError, OSError):
                    pass  # the connection is gone; _reconnect resubscribes only channels still wanted

    @property
    def channel_count(self) -> int:
        return len(self._subscribers)

    async def _read_forever(self) -> None:
        backoff = 0.05
        while True:
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=30.0)
                backoff = 0.05
            except Exception as exc:  # noqa: BLE001 - any failure of the connection: reconnect, never end the reader
                # redis-py already retried; keep trying: the next read reconnects and resubscribes every channel
                # (on a cluster, on another node). Not only RedisError: uvloop raises RuntimeError on a transport
                # closed under a read or write, and a reader that ends leaves every socket of the process deaf.
                log.warning("ws_dispatcher_connection_lost", error=type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                retry_in = 0.05
                while is_cluster() and not await self._move_to_another_node():
                    # Short and capped: each try is one connect, and resubscribing before the publishers' retry queues
                    # drain lets the sockets get those events live instead of a recovery.failed.
                    await asyncio.sleep(retry_in)
                    retry_in = min(retry_in * 2, 0.25)
                continue
            if self._pubsub.reconnected:
                self._pubsub.reconnected = False
                self._ask_everyone_to_resync()
            if message is None:
                if not self._subscribers:
                    return  # idle with nothing to deliver: the next subscribe restarts the reader
                continue
            observe_pubsub_lag(message["data"])  # sampled: at most one parse per PUBSUB_LAG_SAMPLE_S
            channel = message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
            process_handler = self._process_channels.get(channel)
            if process_handler is not None:
                process_handler(message["data"])
                continue
            for subscriber in tuple(self._subscribers.get(channel, ())):
                subscriber.deliver(message["data"])

    async def _move_to_another_node(self) -> bool:
        """Resubscribe every wanted channel on the next node; every socket then catches up from history. False when
        that node failed too (the caller backs off and tries the next one)."""
        async with self._lock:
            old = self._pubsub
            self._node_attempt += 1  # the node we were on failed: the next one in the topology
            try:
                pubsub = await self._connect()
                if self._subscribers:
                    await pubsub.subscribe(*self._subscribers)
                pubsub.reconnected = True  # a new PubSub's first connection skips on_connect: catch up explicitly
                await self._until_cluster_ok()
            except Exception as exc:  # noqa: BLE001 - see _read_forever: a failed move is retried, never fatal
                log.warning("ws_dispatcher_node_unavailable", error=type(exc).__name__)
                return False
            finally:
                if old is not None and old is not self._pubsub:
                    try:
                        await old.aclose()
                    except (redis.RedisError, OSError):
                        pass
            log.info("ws_dispatcher_moved_node", channels=len(self._subscribers))
            return True

    async def _until_cluster_ok(self, timeout_s: float = 10.0) -> None:
        """Hold the reader (messages wait in the subscription) until the cluster serves again, polling often: the
        sockets' catch-up then reads history at once, ahead of the publishers' retry queues, as after a single
        Redis's restart, rather than after them (a recovery.failed where the events could have been delivered).

        If the node we just subscribed on stops answering meanwhile, the subscription went down with it (a whole
        cluster going down node by node can take the node we moved to a moment later): raise, so the caller
        subscribes again at once instead of holding a dead subscription until the cluster is back, while the
        retry queues publish to no one live. Each poll is bounded: the subscriber's client has no read timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            # A ConnectionError (LOADING included) or the poll's timeout propagates: that node is gone.
            info = await asyncio.wait_for(self._node_client.execute_command("CLUSTER", "INFO"), _NODE_POLL_TIMEOUT_S)
            try:
                if _state_ok(info) and await _every_primary_ok():
                    return
            except Exception:  # noqa: BLE001, S110 - not serving yet (see _read_forever); polled until the deadline
                pass
            await asyncio.sleep(0.02)

    def _ask_everyone_to_resync(self) -> None:
        log.info("ws_dispatcher_resubscribed", channels=len(self._subscribers))
        for members in tuple(self._subscribers.values()):
            for subscriber in tuple(members):
                subscriber.resync()

    def track_member(self, uid: str, member: str, subscriber: Subscriber) -> None:
        self._members.add((uid, member))
        self._sockets_by_uid.setdefault(uid, set()).add(subscriber)

    def untrack_member(self, uid: str, member: str, subscriber: Subscriber) -> None:
        self._members.discard((uid, member))
        sockets = self._sockets_by_uid.get(uid)
        if sockets is not None:
            sockets.discard(subscriber)
            if not sockets:
                del self._sockets_by_uid[uid]

    def _fan_out(self, data: bytes) -> None:
        batch = fanout.decode(data)
        if batch is None:
            log.warning("ws_fanout_message_ignored")
            return
        prefix, subscribers_of = user_channel(""), self._subscribers.get  # user_channel(uid) is prefix + uid
        for subscribers, envelope, seq in batch.envelopes(lambda uid: subscribers_of(prefix + uid)):
            for subscriber in tuple(subscribers):
                subscriber.deliver(envelope, seq)

    def _handle_control(self, data: bytes) -> None:
        parsed = control.parse(data)
        if parsed is None:
            log.warning("ws_control_message_ignored")
            return
        action, uid = parsed
        for subscriber in tuple(self._sockets_by_uid.get(uid, ())):
            subscriber.control(action)

    @property
    def member_count(self) -> int:
        return len(self._members)

    async def _maintain_presence_forever(self) -> None:
        """One task per process heart-beats all local sockets (one pipeline) and sweeps expired members.

        Every serving process sweeps, so the members of a process that died expire by TTL and go offline here.
        """
        sweep_every = max(0.5, min(5.0, settings.LISTENERS_TTL_SECONDS / 6))
        beat_every = settings.LISTENERS_HEARTBEAT_INTERVAL
        last_beat = asyncio.get_running_loop().time()
        while self._subscribers or self._members:
            await asyncio.sleep(min(sweep_every, beat_every))
            try:
                if asyncio.get_running_loop().time() - last_beat >= beat_every:
                    last_beat = asyncio.get_running_loop().time()
                    await presence.arefresh(list(self._members))
                await presence.asweep()
                USERS_ONLINE.set(await presence.acount_online())
            except Exception as exc:  # noqa: BLE001 - Redis away (see _read_forever): the next round retries
                log.warning("presence_maintenance_failed", error=type(exc).__name__)


def _state_ok(info: object) -> bool:
    """CLUSTER INFO's reply, raw (a plain client) or parsed (the cluster client), says ``cluster_state:ok``."""
    if isinstance(info, dict):
        return str(info.get("cluster_state")) == "ok"
    return b"cluster_state:ok" in (info if isinstance(info, bytes) else str(info).encode())


async def _every_primary_ok() -> bool:
    """Every primary answers and says the cluster is ok. One node's view lags a master that just went away, and the
    masters of a cluster restarting whole turn ok a few 100 ms apart: a catch-up read sent to a master still in
    CLUSTERDOWN costs redis-py's fixed 0.25 s pause per try, long enough for the publishers' retry queues to pass it."""
    cluster = get_async_redis()
    await cluster.initialize()  # no-op once the topology is known; re-read after a connection error
    primaries = cluster.get_primaries()
    for node in primaries:
        if not _state_ok(await cluster.execute_command("CLUSTER INFO", target_nodes=node)):
            return False
    return bool(primaries)


def _log_unexpected_end(task: asyncio.Task) -> None:
    """The reader and the presence maintainer catch every failure; should one end with an exception all the same,
    say so (its type only: no exception text in logs) instead of leaving it unread in the task."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("ws_dispatcher_task_died", task=task.get_name(), error=type(task.exception()).__name__)


_dispatchers: dict[asyncio.AbstractEventLoop, Dispatcher] = {}


def get_dispatcher() -> Dispatcher:
    loop = asyncio.get_running_loop()
    dispatcher = _dispatchers.get(loop)
    if dispatcher is None:
        dispatcher = _dispatchers[loop] = Dispatcher()
    return dispatcher


def local_counts() -> dict[str, int]:
    """This process's sockets, users and subscribed channels over its event loops, for its heartbeat (the admin's
    workers page). Read from another thread: sizes only, never iterating a set the loop may be changing."""
    dispatchers = tuple(_dispatchers.values())
    return {
        "sockets": sum(dispatcher.member_count for dispatcher in dispatchers),
        "users": sum(len(dispatcher._sockets_by_uid) for dispatcher in dispatchers),
        "channels": sum(dispatcher.channel_count for dispatcher in dispatchers),
    }
