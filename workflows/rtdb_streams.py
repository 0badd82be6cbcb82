"""Realtime Database listeners: ``firebase_admin.db.Reference.listen()`` (one SSE connection and one thread each),
plus the local mirror that turns its put/patch events into "what is there now" and "what is new".

The SDK reconnects by itself when the server ends a stream, and then sends the whole node again (a ``put`` at
``/``); the mirror diff makes that harmless (only really new children are reported). When a reconnect fails, the
SDK's thread dies with the error: ``failure`` says so and the watchdog replaces the stream.
"""
from __future__ import annotations

import copy
import threading
from typing import Any, Callable

import structlog

from core.integrations.rtdb import reference

log = structlog.get_logger(__name__)

RtdbHandler = Callable[["RtdbStream", str, str, Any], None]


class RtdbStream:
    """One listened path. ``on_event(stream, event_type, path, data)`` runs on the SDK thread: keep it short."""

    def __init__(self, path: str, on_event: RtdbHandler) -> None:
        self.path = path
        self.closed = False
        self._on_event = on_event
        self._lock = threading.Lock()
        # Blocking: opens the HTTP stream (raises FirebaseError when the database is unreachable).
        self._registration = reference(path).listen(self._deliver)

    def _deliver(self, event: Any) -> None:
        if self.closed:
            return
        try:
            self._on_event(self, event.event_type, event.path, event.data)
        except Exception:  # an exception here would kill the SDK's only thread for this stream
            log.exception("rtdb_event_handler_failed", path=self.path)

    @property
    def failure(self) -> str | None:
        """Why this stream stopped on its own, or None while it delivers."""
        if self.closed:
            return "closed"
        # firebase-admin==7.7.0 (pinned): the registration keeps its reader thread in ``_thread``.
        if not self._registration._thread.is_alive():
            return "error"
        return None

    def stalled(self, now: float, stall_s: float) -> bool:
        # Keep-alive frames never reach the callback, so silence on a healthy stream is normal: no stall rule here.
        return False

    def close(self) -> None:
        """Stop without waiting. The SDK's own close() pulls the response from under its reader thread, which then
        dies with a traceback at the next keep-alive while close() joins it; shutting the socket's read side instead
        ends the read at once and the thread returns cleanly."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
        # firebase-admin==7.7.0 (pinned): the registration's SSE client is ``_sse``; these flags are what its own
        # close() sets so that the reader does not reconnect.
        sse = self._registration._sse
        sse.should_connect = False
        sse.retry = 0
        try:
            sse.resp.raw.shutdown()
        except (ValueError, RuntimeError, OSError):  # the connection is already gone: nothing is reading
            sse.close()


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
