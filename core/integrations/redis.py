"""Redis/Valkey: one client per process (sync, thread-safe pool) and one per event loop (asyncio).

Timeouts are explicit: redis-py's defaults either hang forever or (redis-py 8) kill idle subscribers after 5 s
(README, "Choices, by measurement"). Command clients get a socket timeout; subscribers get none and rely on
TCP keepalive plus the health check interval instead.
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

_COMMAND_TIMEOUT_S = 5.0
_CONNECT_TIMEOUT_S = 2.0

_lock = threading.Lock()
_sync_client: redis.Redis | None = None
_async_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis]" = weakref.WeakKeyDictionary()


def _options(*, subscriber: bool = False) -> dict[str, Any]:
    options: dict[str, Any] = {
        "socket_connect_timeout": _CONNECT_TIMEOUT_S,
        "socket_timeout": None if subscriber else _COMMAND_TIMEOUT_S,
        "socket_keepalive": True,
        "health_check_interval": 30,
        "decode_responses": False,
        "max_connections": 256,
    }
    if settings.REDIS_URL.startswith("rediss://") and not settings.REDIS_TLS_VERIFY:
        options["ssl_cert_reqs"] = ssl.CERT_NONE
    return options


def get_redis() -> redis.Redis:
    """The process-wide synchronous client (safe to share between threads)."""
    global _sync_client
    if _sync_client is None:
        with _lock:
            if _sync_client is None:
                _sync_client = redis.Redis.from_url(settings.REDIS_URL, **_options())
    return _sync_client


def get_async_redis() -> aioredis.Redis:
    """The asyncio client of the running event loop (a client can't be shared across loops)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = aioredis.Redis.from_url(settings.REDIS_URL, **_options())
        _async_clients[loop] = client
    return client


def new_async_subscriber() -> aioredis.Redis:
    """A dedicated asyncio connection for SUBSCRIBE (no read timeout: idle subscriptions are normal)."""
    return aioredis.Redis.from_url(settings.REDIS_URL, **_options(subscriber=True))


def new_sync_subscriber() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, **_options(subscriber=True))


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
