"""redis-py's cluster clients, with every failure a ``redis.RedisError``.

redis-py raises ``RedisClusterException`` (and its ``SlotNotCoveredError``), which is *not* a ``RedisError``, when no
node answers or a slot has no owner for a moment (a master restarting). Every caller in the service handles Redis
being away with ``except (redis.RedisError, OSError)`` (publisher queue, RPC ``UNAVAILABLE``, worker and dispatcher
reconnects, /healthz), so these subclasses turn it into ``ClusterUnavailable``, a ``redis.ConnectionError``, at the
client boundary instead of in every caller.

Under uvloop the asyncio client can also raise ``RuntimeError`` ("unable to perform operation on <TCPTransport
closed=True>; the handler is closed"): when a command fails on one node, redis-py re-reads the topology and closes every
node's connections, including ones other coroutines are writing on at that moment (a master restarting makes this
routine). It is the same event, a connection lost mid-command, so it becomes ``ClusterUnavailable`` too; left as it was,
it escaped every ``except RedisError`` and killed the dispatcher's reader without a word.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import redis
from redis.asyncio.cluster import ClusterPipeline as AsyncClusterPipeline
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import ClusterPipeline, ClusterPubSub, RedisCluster
from redis.exceptions import RedisClusterException


class ClusterUnavailable(redis.ConnectionError):
    """No node could serve the command right now (see the module docstring)."""


def _translate(exc: Exception) -> ClusterUnavailable:
    return ClusterUnavailable(type(exc).__name__)


@contextlib.contextmanager
def _as_redis_errors() -> Iterator[None]:
    """Both failures of the module docstring become ``ClusterUnavailable``; any other ``RuntimeError`` stays a bug."""
    try:
        yield
    except RedisClusterException as exc:
        raise _translate(exc) from exc
    except RuntimeError as exc:
        if "closed" not in str(exc):
            raise
        raise _translate(exc) from exc


class _Pipeline(ClusterPipeline):
    def execute(self, raise_on_error: bool = True) -> list[Any]:
        with _as_redis_errors():
            return super().execute(raise_on_error)


class _PubSub(ClusterPubSub):
    def execute_command(self, *args: Any) -> Any:
        with _as_redis_errors():
            return super().execute_command(*args)

    def get_message(self, *args: Any, **kwargs: Any) -> Any:
        with _as_redis_errors():
            return super().get_message(*args, **kwargs)


class SyncCluster(RedisCluster):
    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        with _as_redis_errors():
            return super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> _Pipeline:
        pipe = super().pipeline(transaction=transaction, shard_hint=shard_hint)
        pipe.__class__ = _Pipeline  # same object, only execute() translated
        return pipe  # type: ignore[return-value]

    def pubsub(self, node: Any = None, host: Any = None, port: Any = None, **kwargs: Any) -> _PubSub:
        return _PubSub(self, node=node, host=host, port=port, **kwargs)


class _AsyncPipeline(AsyncClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        with _as_redis_errors():
            return await super().execute(raise_on_error, allow_redirections)


class AsyncCluster(AsyncRedisCluster):
    # redis-py 6.4's asyncio client closes its startup nodes when discovery fails (every node down at once) and can
    # never discover again: the factory replaces a client marked broken (core/integrations/redis.py).
    broken = False

    async def initialize(self) -> AsyncCluster:
        try:
            return await super().initialize()
        except RedisClusterException as exc:
            self.broken = True
            raise _translate(exc) from exc

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        with _as_redis_errors():
            return await super().execute_command(*args, **kwargs)

    async def publish(self, channel: Any, message: Any) -> int:
        """Classic PUBLISH (redis-py 6.4's asyncio cluster client has no publish(); it routes the command by the
        channel's slot, and the cluster broadcasts it to every node)."""
        return await self.execute_command("PUBLISH", channel, message)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> _AsyncPipeline:
        if shard_hint:
            raise RedisClusterException("shard_hint is not supported in cluster mode")
        return _AsyncPipeline(self, transaction)
