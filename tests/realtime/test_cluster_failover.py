"""Redis Cluster only (``--redis-cluster``): a master restarts while events stream to a socket.

The restarted master owns the user's channel (its seq and history) and the slot of ``ws:control``, where every
gateway process's dispatcher subscribes: publishes to it fail and queue, the dispatcher loses its connection and moves
to another node. Nothing may be lost silently: the socket gets every event, in order, or a ``recovery.failed``.
"""
from __future__ import annotations

import threading

import pytest
from redis.crc import key_slot

from realtime.channels import seq_key, user_channel
from realtime.control import CONTROL_CHANNEL
from realtime.events import RECOVERY_FAILED
from realtime.publisher import publish_event, wait_for_retry_queue
from tests.realtime.test_ws_delivery import wait_for_subscription
from tests.realtime.wsclient import open_ws, recv_json

EVENTS = 150


def _master_of(stack, key: str) -> int:
    """Index (in stack.redis_cluster.ports) of the master that owns ``key``'s slot."""
    client = stack.redis_client()
    node = client.nodes_manager.get_node_from_slot(key_slot(key.encode()))
    return stack.redis_cluster.ports.index(int(node.port))


def _uid_beside_control(stack) -> str:
    control = _master_of(stack, CONTROL_CHANNEL)
    return next(uid for uid in (f"failover{n}" for n in range(10_000))
                if _master_of(stack, seq_key(user_channel(uid))) == control)


def test_restarting_a_master_mid_stream_loses_no_event_without_recovery_failed(stack, live_gateway, service_token):
    if not stack.cluster_mode:
        pytest.skip("needs the 3-master cluster: run with --redis-cluster")
    uid = _uid_beside_control(stack)
    master = _master_of(stack, CONTROL_CHANNEL)
    with open_ws(live_gateway, service_token, uid=uid) as ws:
        wait_for_subscription(user_channel(uid))
        halfway = threading.Event()
        published: list[int] = []

        def publish() -> None:
            for n in range(EVENTS):
                publish_event(uid, "notif.sync", {"n": n})  # queued in order while the master is away
                published.append(n)
                if n == EVENTS // 3:
                    halfway.set()
                stop.wait(0.01)

        stop = threading.Event()
        publisher = threading.Thread(target=publish, name="failover-publisher")
        publisher.start()
        assert halfway.wait(30)
        stack.redis_cluster.restart(master)  # SIGTERM (AOF written), start, wait until the cluster is ok
        publisher.join(60)
        assert not publisher.is_alive() and published == list(range(EVENTS))
        assert wait_for_retry_queue(timeout=60)

        received: list[int] = []
        seqs: list[int] = []
        recovery_failed = False
        while not received or received[-1] != EVENTS - 1:
            frame = recv_json(ws, timeout=30)
            if frame["type"] == RECOVERY_FAILED:
                recovery_failed = True
                continue
            received.append(frame["payload"]["n"])
            seqs.append(frame["seq"])

    assert seqs == sorted(set(seqs))  # in order, never twice
    assert received == sorted(received)
    assert received == list(range(EVENTS)) or recovery_failed, (len(received), recovery_failed)
