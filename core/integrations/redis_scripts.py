"""Lua scripts that run the same way on one Redis and on a Redis Cluster, and grouping of keys by hash slot.

A script names its keys, and on a cluster they must share one slot (core/keys.py gives them a common hash tag); the
cluster client sends the call to the node that owns it. Many calls go in one pipeline, which redis-py's cluster
pipeline splits per node and sends to all of them, so "one call per slot" costs one round trip per node.

Calls go by EVALSHA; a server that does not know the script yet (first use, a restarted node, SCRIPT FLUSH) answers
NOSCRIPT, which means the call did not run, so it is sent again with the source (EVAL caches it on that node).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from redis.crc import key_slot
from redis.exceptions import NoScriptError

from .redis import get_async_redis, get_redis, is_cluster

T = TypeVar("T")
Call = tuple[Sequence[str], Sequence[Any]]  # (keys, args)


class LuaScript:
    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # Redis names a script by its SHA-1

    def __call__(self, keys: Sequence[str], args: Sequence[Any] = ()) -> Any:
        client = get_redis()
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return client.eval(self.source, len(keys), *keys, *args)

    async def run_async(self, keys: Sequence[str], args: Sequence[Any] = ()) -> Any:
        client = get_async_redis()
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)

    def run_many(self, calls: Sequence[Call], *, raise_on_error: bool = True) -> list[Any]:
        """One pipelined round trip (per node) for many calls, each on its own keys; results in order. With
        ``raise_on_error=False`` a call that failed leaves its exception in its place (the others ran)."""
        if not calls:
            return []
        results = self._pipelined(get_redis(), calls, use_sha=True)
        retry = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if retry:
            for i, result in zip(retry, self._pipelined(get_redis(), [calls[i] for i in retry], use_sha=False)):
                results[i] = result
        return _checked(results, raise_on_error)

    async def run_many_async(self, calls: Sequence[Call], *, raise_on_error: bool = True) -> list[Any]:
        if not calls:
            return []
        results = await self._apipelined(calls, use_sha=True)
        retry = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if retry:
            for i, result in zip(retry, await self._apipelined([calls[i] for i in retry], use_sha=False)):
                results[i] = result
        return _checked(results, raise_on_error)

    def _pipelined(self, client: Any, calls: Sequence[Call], *, use_sha: bool) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for keys, args in calls:
            self._queue(pipe, keys, args, use_sha)
        return list(pipe.execute(raise_on_error=False))

    async def _apipelined(self, calls: Sequence[Call], *, use_sha: bool) -> list[Any]:
        pipe = get_async_redis().pipeline(transaction=False)
        for keys, args in calls:
            self._queue(pipe, keys, args, use_sha)
        return list(await pipe.execute(raise_on_error=False))

    def _queue(self, pipe: Any, keys: Sequence[str], args: Sequence[Any], use_sha: bool) -> None:
        # execute_command: redis-py's cluster pipeline blocks its eval()/evalsha() methods, though it routes the
        # commands by their keys like any other (every call here names keys of one slot).
        if use_sha:
            pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        else:
            pipe.execute_command("EVAL", self.source, len(keys), *keys, *args)


def _checked(results: list[Any], raise_on_error: bool) -> list[Any]:
    if raise_on_error:
        for result in results:
            if isinstance(result, Exception):
                raise result
    return results


def group_by_slot(items: Iterable[T], key: Callable[[T], str]) -> list[list[T]]:
    """Items whose keys may go in one script: all of them on a single Redis (any script may span keys there, so
    single-node behaviour stays one call), one group per hash slot on a cluster, in first-seen order."""
    items = list(items)
    if not is_cluster():
        return [items] if items else []
    groups: dict[int, list[T]] = {}
    for item in items:
        groups.setdefault(key_slot(key(item).encode()), []).append(item)
    return list(groups.values())
