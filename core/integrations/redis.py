"""Redis/Valkey: the one factory of every Redis connection in the service.

One client per process (sync, thread-safe pool) and one per event loop (asyncio). With ``LISTENERS_REDIS_CLUSTER=true``
(ElastiCache Valkey Serverless, any cluster-mode Redis) they are redis-py's ``RedisCluster`` clients, discovered from
the configuration endpoint in ``REDIS_URL`` (or ``LISTENERS_REDIS_HOST/PORT/TLS/PASSWORD``); TLS and the password work
the same way for both. Every script and transaction keeps its keys in one hash slot (core/keys.py), and the
cluster client routes it to the node that owns the slot, following MOVED/ASK and re-reading the topology after a
connection error.

Timeouts are explicit: redis-py's defaults either hang forever or (redis-py 8) kill idle subscribers after 5 s
(README, "Choices, by measurement"). Command clients get a socket timeout; subscribers get none and rely on
TCP keepalive plus the health check interval instead.

Subscribers on a cluster: classic ``PUBLISH`` is broadcast to every node, so a plain connection to any one node hears
every channel. redis-py 6.4's asyncio ``RedisCluster`` has no pub/sub, so the WebSocket dispatcher gets a plain async
client to one node (``new_async_subscriber``); the listeners worker's sync ``RedisCluster.pubsub()`` picks the node
that owns its first channel's slot.
"""
from __future__ import annotations

import asyncio
import ssl
import threading
import weakref
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import LoadBalancingStrategy, RedisCluster
from redis.connection import SSLConnection, parse_url
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from .redis_cluster import AsyncCluster, SyncCluster

_COMMAND_TIMEOUT_S = 5.0
_CONNECT_TIMEOUT_S = 2.0
# Cluster clients retry MOVED/ASK/connection errors (re-reading the topology) with this backoff; redis-py's default
# (1 s doubling to 10 s) would hold a request, or /healthz, for many seconds. Callers above retry too: the publisher's
# queue, the RPC client on UNAVAILABLE, the dispatcher's reconnect.
_CLUSTER_RETRIES = 3
_CLUSTER_BACKOFF = {"base": 0.05, "cap": 0.5}

SyncClient = redis.Redis | RedisCluster
AsyncClient = aioredis.Redis | AsyncRedisCluster

_lock = threading.Lock()
_sync_client: SyncClient | None = None
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncClient] = weakref.WeakKeyDictionary()


def is_cluster() -> bool:
    return bool(settings.REDIS_CLUSTER)


def _options(*, subscriber: bool = False) -> dict[str, Any]:
    options: dict[str, Any] = {
        "socket_connect_timeout": _CONNECT_TIMEOUT_S,
        "socket_timeout": None if subscriber else _COMMAND_TIMEOUT_S,
        "socket_keepalive": True,
        "health_check_interval": 30,
        "decode_responses": False,
        "max_connections": 256,  # per node on a cluster
    }
    if settings.REDIS_URL.startswith("rediss://") and not settings.REDIS_TLS_VERIFY:
        options["ssl_cert_reqs"] = ssl.CERT_NONE
    return options


def _cluster_options(**kwargs: Any) -> dict[str, Any]:
    options = {**_options(**kwargs), "retry": Retry(ExponentialWithJitterBackoff(**_CLUSTER_BACKOFF), _CLUSTER_RETRIES)}
    if settings.REDIS_READ_FROM_REPLICAS:
        options["load_balancing_strategy"] = LoadBalancingStrategy.ROUND_ROBIN
    return options


def _new_sync(*, subscriber: bool = False) -> SyncClient:
    if is_cluster():
        return SyncCluster.from_url(settings.REDIS_URL, **_cluster_options(subscriber=subscriber))
    return redis.Redis.from_url(settings.REDIS_URL, **_options(subscriber=subscriber))


def get_redis() -> SyncClient:
    """The process-wide synchronous client (safe to share between threads)."""
    global _sync_client
    if _sync_client is None:
        with _lock:
            if _sync_client is None:
                _sync_client = _new_sync()
    return _sync_client


def get_async_redis() -> AsyncClient:
    """The asyncio client of the running event loop (a client can't be shared across loops)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None or getattr(client, "broken", False):
        if is_cluster():
            options = _cluster_options()
            options.pop("health_check_interval")  # the asyncio cluster client has none (it holds no subscription)
            client = AsyncCluster.from_url(settings.REDIS_URL, **options)
        else:
            client = aioredis.Redis.from_url(settings.REDIS_URL, **_options())
        _async_clients[loop] = client
    return client


async def new_async_subscriber(near_channel: str | None = None, attempt: int = 0) -> aioredis.Redis:
    """A dedicated asyncio connection for SUBSCRIBE (no read timeout: idle subscriptions are normal).

    On a cluster: a plain client to one node. The first attempt goes to the node that owns ``near_channel``'s slot
    (so a PUBLISH on that channel, which redis-py routes by slot, counts this subscriber); each further attempt, after
    the previous node failed, to the next primary of the current topology.
    """
    if not is_cluster():
        return aioredis.Redis.from_url(settings.REDIS_URL, **_options(subscriber=True))
    candidates = await _subscriber_nodes(near_channel)
    host, port = candidates[attempt % len(candidates)]
    # One quick retry: the caller moves to the next node itself, instead of redis-py retrying a dead one for seconds.
    retry = Retry(ExponentialWithJitterBackoff(**_CLUSTER_BACKOFF), 1)
    return aioredis.Redis(host=host, port=port, retry=retry, **_node_connection_options(), **_options(subscriber=True))


async def _subscriber_nodes(near_channel: str | None) -> list[tuple[str, int]]:
    """Primaries of the current topology, the owner of ``near_channel``'s slot first. While the cluster is re-forming
    (CLUSTER SLOTS fails or is empty) the last known nodes serve: a node accepts SUBSCRIBE before its cluster is whole,
    and subscribing early is what lets sockets receive the events published right after it is."""
    global _known_nodes
    cluster = get_async_redis()
    assert isinstance(cluster, AsyncRedisCluster)
    try:
        await cluster.initialize()  # no-op once the topology is known; redis-py re-reads it after connection errors
        primaries = sorted((node.host, int(node.port)) for node in cluster.get_primaries())
        owner = cluster.get_node_from_key(near_channel) if near_channel is not None else None
    except (redis.RedisError, RedisClusterException):
        primaries, owner = [], None
    if owner is not None:
        first = (owner.host, int(owner.port))
        primaries = [first] + [node for node in primaries if node != first]
    if primaries:
        _known_nodes = primaries
    if not _known_nodes:
        parsed = parse_url(settings.REDIS_URL)
        return [(parsed.get("host", "127.0.0.1"), int(parsed.get("port", 6379)))]
    return _known_nodes


def _node_connection_options() -> dict[str, Any]:
    """Credentials and TLS from REDIS_URL, for a plain client to one node of the cluster it names."""
    parsed = parse_url(settings.REDIS_URL)
    options = {key: parsed[key] for key in ("username", "password") if parsed.get(key)}
    if parsed.get("connection_class") is SSLConnection:
        options["ssl"] = True
    return options


def new_sync_subscriber() -> SyncClient:
    """A sync client for SUBSCRIBE; on a cluster its ``pubsub()`` connects to the node of the first channel's slot."""
    return _new_sync(subscriber=True)


def subscriber_count(channel: str) -> int:
    """PUBSUB NUMSUB of a classic channel, over every node of a cluster (each node only counts its own clients)."""
    client = get_redis()
    if isinstance(client, RedisCluster):
        reply = client.pubsub_numsub(channel, target_nodes=RedisCluster.ALL_NODES)
    else:
        reply = client.pubsub_numsub(channel)
    return int(reply[0][1]) if reply else 0


def ping() -> bool:
    try:
        return bool(get_redis().ping())
    except (redis.RedisError, OSError):
        return False


def reset_clients() -> None:
    """Forget cached clients (tests that point the process at another server)."""
    global _sync_client
    with _lock:
        if _sync_client is not None:
            _sync_client.close()
        _sync_client = None
        _async_clients.clear()
