"""MONITOR on every Redis node of the test stack while an action runs: the commands a code path sends, counted."""
from __future__ import annotations

import threading
import uuid
from typing import Any, Callable

import redis


def monitored(stack: Any, action: Callable[[], Any]) -> dict[int, list[dict]]:
    """MONITOR's entries on every node (port -> entries) while ``action`` ran: the 3 masters on a cluster, else the one
    Redis. Each node's monitor stops at a sentinel ECHO sent after the action, so no entry is missed or cut short."""
    ports = list(stack.redis_cluster.ports) if stack.redis_cluster is not None else [stack.redis_port]
    sentinel = f"monitored-{uuid.uuid4().hex}"
    seen: dict[int, list[dict]] = {port: [] for port in ports}
    ready = threading.Barrier(len(ports) + 1, timeout=30)

    def watch(port: int) -> None:
        with redis.Redis(port=port, socket_timeout=30).monitor() as monitor:
            ready.wait()
            while sentinel not in (entry := monitor.next_command())["command"]:
                seen[port].append(entry)

    threads = [threading.Thread(target=watch, args=(port,), daemon=True) for port in ports]
    for thread in threads:
        thread.start()
    ready.wait()
    action()
    for port in ports:
        redis.Redis(port=port).echo(sentinel)
    for thread in threads:
        thread.join(30)
    return seen
