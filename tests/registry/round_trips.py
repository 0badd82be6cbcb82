"""Counting the Redis round trips of a call on the real Valkey: MONITOR on every node, commands a script runs left out.

MONITOR lists every command a node executes, in order, with its client's address; the commands a Lua script runs are
marked ``lua``. The gateway's connections are the ones whose commands name the test's unique user id; every other
command of those connections between the start and a sentinel ECHO counts too (a PUBLISH, a claim…). Background
work of the test process (the activity flusher, trace records) uses its own connections and never names that user.
"""
from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import redis


def _node_ports(stack: Any) -> list[int]:
    return list(stack.redis_cluster.ports) if stack.redis_cluster is not None else [stack.redis_port]


def top_level_commands(stack: Any, uid: str, action: Callable[[], None], timeout_s: float = 30.0) -> list[str]:
    """The commands the process sent (not those its scripts ran) on connections that named ``uid``, while
    ``action`` ran, over every node."""
    sentinel = f"round-trips-{uuid.uuid4().hex}"
    seen: list[dict] = []
    ready, errors = threading.Barrier(len(_node_ports(stack)) + 1, timeout=timeout_s), []

    def watch(port: int) -> None:
        try:
            with redis.Redis(port=port, socket_timeout=timeout_s).monitor() as monitor:
                ready.wait()
                while True:
                    entry = monitor.next_command()
                    if sentinel in entry["command"]:
                        return
                    seen.append(entry)
        except Exception as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)
            ready.abort()

    threads = [threading.Thread(target=watch, args=(port,), daemon=True) for port in _node_ports(stack)]
    for thread in threads:
        thread.start()
    ready.wait()
    action()
    for port in _node_ports(stack):
        redis.Redis(port=port).echo(sentinel)
    for thread in threads:
        thread.join(timeout_s)
    assert not errors, errors
    sent = [entry for entry in seen if entry.get("client_type") != "lua"]
    gateway = {(entry["client_address"], entry["client_port"]) for entry in sent if uid in entry["command"]}
    return [entry["command"] for entry in sent if (entry["client_address"], entry["client_port"]) in gateway]
