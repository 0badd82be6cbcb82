"""Peers' liveness: a registered worker without its control-channel subscription is dead now (its users move after
a short grace, not when its leases expire); one that keeps the subscription (a paused process) keeps its users until
its leases expire. Fake peers stand in for the other worker: a heartbeat and a lease, with or without a subscriber."""
from __future__ import annotations

import time
import uuid

import pytest
from django.utils import timezone

from core.integrations.redis import get_redis, subscriber_count
from tests.conftest import wait_until
from tests.workflows.conftest import go_online, ready
from workflows import ownership
from workflows.models import ListenerState

pytestmark = pytest.mark.django_db(transaction=True)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_a_peer_whose_subscription_is_gone_is_declared_dead_after_the_grace_and_its_users_move(make_worker):
    peer, uid = new_id("crashed"), new_id("lv")
    ownership.heartbeat(peer, {"users": 1}, ttl_ms=60_000)  # its heartbeat and lease would last another minute
    get_redis().set(ownership.lease_key(uid), peer, px=60_000)
    ListenerState.objects.create(worker_id=peer, uid=uid, kinds=["messages"], since=timezone.now())
    go_online(uid)

    started = time.monotonic()
    worker = make_worker()
    wait_until(lambda: ready(worker, uid), timeout=20)
    took = time.monotonic() - started
    # Not before the grace (a subscriber may be reconnecting), and long before the peer's lease would expire.
    assert worker.config.liveness_grace_s <= took < 15, took
    assert ownership.owner(uid) == worker.worker_id
    wait_until(lambda: peer not in ownership.registered_workers(), timeout=10)
    assert not ListenerState.objects.filter(worker_id=peer).exists()  # its rows went before it was forgotten


def test_a_paused_peer_that_keeps_its_subscription_keeps_its_users_until_its_leases_expire(make_worker, stack):
    peer, uid = new_id("paused"), new_id("lv")
    client = stack.redis_client()
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(ownership.control_channel(peer))  # its sockets stay open while the process is stopped
    try:
        wait_until(lambda: subscriber_count(ownership.control_channel(peer)) == 1)
        ownership.heartbeat(peer, {"users": 1}, ttl_ms=200)  # ...but it no longer heart-beats
        lease_s = 2.5
        leased_at = time.monotonic()  # before the SET: the lease cannot expire earlier than leased_at + lease_s
        client.set(ownership.lease_key(uid), peer, px=int(lease_s * 1000))
        go_online(uid)

        worker = make_worker()
        wait_until(lambda: ready(worker, uid), timeout=20)
        assert time.monotonic() - leased_at >= lease_s  # taken over only once the lease expired, never deleted
        assert ownership.owner(uid) == worker.worker_id
    finally:
        pubsub.close()
