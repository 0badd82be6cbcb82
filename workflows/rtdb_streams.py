"""Realtime Database listeners on the worker's loop (core/integrations/rtdb_sse.py: one task each, spread over a few
connection pools, ``RtdbStreamPools``), plus the local mirror that turns their put/patch events into "what is there now" and "what is new".

The client reconnects by itself when the server ends a stream or the connection fails, and the new stream sends the
whole node again (a ``put`` at ``/``); the mirror diff makes that harmless (only really new children are reported).
A stream the server refuses for good (``cancel``, a 4xx) sets ``failure``, and one whose keep-alives stopped is
``stalled``: the watchdog replaces either (user_listeners.py).
"""
from __future__ import annotations

import asyncio
import copy
import zlib
from typing import Any, Callable

from core.integrations.rtdb import new_stream_client
from core.integrations.rtdb_sse import RtdbStreamClient, SseListener

RtdbHandler = Callable[["RtdbStream", str, str, Any], None]
DEFAULT_POOLS = 16


class RtdbStreamPools:
    """A worker's Realtime DB streams over ``count`` connection pools (a path always goes to the same one), sharing
    one connect budget. httpcore looks through every connection of its pool each time it places a request: with the
    thousand streams of 1,000 users in one pool that cost the worker about 3 s of CPU during the attach (a third of
    its time there, bench/listeners.py), with 16 pools a sixteenth of it."""

    def __init__(self, pools: list[RtdbStreamClient]) -> None:
        self.pools = pools
        for pool in pools[1:]:
            pool.connecting = pools[0].connecting

    @classmethod
    async def create(cls, count: int = DEFAULT_POOLS) -> "RtdbStreamPools":
        """On the loop that will serve them."""
        return cls([await new_stream_client() for _ in range(count)])

    def listen(self, path: str, handler: Any) -> SseListener:
        return self.pools[zlib.crc32(path.encode()) % len(self.pools)].listen(path, handler)

    async def aclose(self) -> None:
        await asyncio.gather(*(pool.aclose() for pool in self.pools))


class RtdbStream:
    """One listened path. ``on_event(stream, event_type, path, data)`` runs on the loop: keep it short. Opening never
    blocks: the connection (and the first snapshot) come on the loop."""

    seeded = False  # set by the user's listeners (user_listeners.py)

    def __init__(self, path: str, on_event: RtdbHandler, client: RtdbStreamClient | RtdbStreamPools) -> None:
        self.path = path
        self.closed = False
        self._listener = client.listen(path, lambda event_type, at, data: on_event(self, event_type, at, data))

    @property
    def failure(self) -> str | None:
        """Why this stream stopped, or None while it delivers (or reconnects)."""
        return "closed" if self.closed else self._listener.failure

    def stalled(self, now: float, stall_s: float) -> bool:
        return self._listener.stalled(now, stall_s)

    def close(self) -> None:
        """Stop without waiting (any thread)."""
        self.closed = True
        self._listener.close()


# --- mirror -----------------------------------------------------------------------------------------------------------
def _segments(path: str) -> list[str]:
    return [segment for segment in path.split("/") if segment]


def _set_at(tree: dict[str, Any], segments: list[str], value: Any) -> None:
    node = tree
    parents: list[tuple[dict[str, Any], str]] = []
    for segment in segments[:-1]:
        child = node.get(segment)
        if not isinstance(child, dict):
            if value is None:
                return
            child = {}
            node[segment] = child
        parents.append((node, segment))
        node = child
    if value is None:
        node.pop(segments[-1], None)
        # RTDB has no empty objects: a parent left empty disappears too.
        for parent, key in reversed(parents):
            if parent[key]:
                break
            del parent[key]
    else:
        node[segments[-1]] = copy.deepcopy(value)


def apply_event(mirror: dict[str, Any], event_type: str, path: str, data: Any) -> dict[str, Any]:
    """The listened node after one SSE event (``put`` replaces at ``path``, ``patch`` merges children there)."""
    segments = _segments(path)
    if event_type == "put":
        if not segments:
            return copy.deepcopy(data) if isinstance(data, dict) else {}
        _set_at(mirror, segments, data)
    elif event_type == "patch" and isinstance(data, dict):
        for key, value in data.items():
            _set_at(mirror, segments + _segments(key), value)
    return mirror


def new_children(known: set[str], after: dict[str, Any]) -> list[str]:
    """Keys that hold a record now and were not ``known`` before, in key order (push ids sort by creation time)."""
    return sorted(key for key, value in after.items() if key not in known and isinstance(value, dict))
