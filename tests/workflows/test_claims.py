"""The claims read what changed, not the fleet (workflows/leases.py): between the periodic scans of every online user,
a tick reads only the users announced on ``presence:events``, waiting out the claim delay, or held by a worker that is
not live. A fake peer stands in for the other worker: a heartbeat, a subscription on its control channel and leases."""
from __future__ import annotations

import time
import uuid
from typing import Iterator

import pytest
from redis.cluster import RedisCluster

from core.integrations.redis import get_redis, subscriber_count
from core.integrations.redis_scripts import group_by_slot
from tests.conftest import wait_until
from tests.workflows.conftest import go_online, ready
from workflows import ownership

pytestmark = pytest.mark.django_db(transaction=True)


def lease_reads() -> int:
    """MGET calls served so far (``ownership.owners``, the claims' read of leases, is their only sender), summed over
    the nodes of a cluster."""
    client = get_redis()
    if isinstance(client, RedisCluster):
        replies = list(client.info("commandstats", target_nodes=RedisCluster.ALL_NODES).values())
    else:
        replies = [client.info("commandstats")]
    return sum(int(reply.get("cmdstat_mget", {}).get("calls", 0)) for reply in replies)


@pytest.fixture
def live_peer(stack) -> Iterator[str]:
    """A peer that stays live (heartbeat for a minute, subscribed) and never claims anything itself."""
    peer = f"peer-{uuid.uuid4().hex[:8]}"
    pubsub = stack.redis_client().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(ownership.control_channel(peer))
    try:
        wait_until(lambda: subscriber_count(ownership.control_channel(peer)) == 1)
        ownership.heartbeat(peer, {"users": 0}, ttl_ms=60_000)
        yield peer
    finally:
        pubsub.close()


def preferring(peer: str, worker_id: str, prefix: str, *, peer_preferred: bool) -> str:
    """A uid whose preferred worker, of the two, is the peer (or ours)."""
    for number in range(1000):
        uid = f"{prefix}-{number}"
        if (ownership.preferred_worker(uid, [peer, worker_id]) == peer) == peer_preferred:
            return uid
    raise AssertionError("no such uid")


def heartbeat_at(worker_id: str) -> bytes | None:
    """The worker writes it at every tick (and more often only while users wait for their first snapshots)."""
    return get_redis().hget(ownership.stats_key(worker_id), "heartbeat_at")


def test_a_steady_fleet_costs_a_tick_no_read_of_every_lease(make_worker, live_peer):
    held = [f"held-{number}" for number in range(50)]
    for uid in held:
        get_redis().set(ownership.lease_key(uid), live_peer, px=60_000)
        go_online(uid)
    worker = make_worker()
    assert 6 * worker.config.tick_s < worker.config.claim_scan_s
    wait_until(lambda: worker._leases._next_scan_at > 0)  # the first tick reads every online user...
    ticks: set[bytes | None] = set()
    wait_until(lambda: ticks.add(heartbeat_at(worker.worker_id)) or len(ticks) > 2, interval=0.05)  # ...done now
    before, ticks = lease_reads(), set()
    wait_until(lambda: ticks.add(heartbeat_at(worker.worker_id)) or len(ticks) > 6, timeout=30, interval=0.05)
    # Six ticks: reading every online user's lease each tick was six scans' MGETs (one per slot of the users);
    # now at most one periodic scan's.
    assert lease_reads() - before <= len(group_by_slot(held, ownership.lease_key))
    assert not worker.users  # the peer is live and holds them all

    # A user announced meanwhile is checked at the next tick: ours to claim at once when we are its preferred worker.
    uid = preferring(live_peer, worker.worker_id, "announced", peer_preferred=False)
    go_online(uid)
    wait_until(lambda: ready(worker, uid), timeout=20)


def test_an_announced_user_its_preferred_peer_leaves_unowned_is_claimed_after_the_claim_delay(make_worker, live_peer):
    worker = make_worker()
    wait_until(lambda: live_peer in worker._peers.live_workers)
    uid = preferring(live_peer, worker.worker_id, "delayed", peer_preferred=True)
    announced_at = time.monotonic()
    go_online(uid)
    wait_until(lambda: ready(worker, uid), timeout=20)
    assert time.monotonic() - announced_at >= worker.config.claim_delay_s  # the preferred peer had its chance first
    assert ownership.owner(uid) == worker.worker_id


def test_a_user_left_unowned_without_an_announcement_is_claimed_by_the_periodic_scan(make_worker, live_peer):
    worker = make_worker()
    uid = preferring(live_peer, worker.worker_id, "silent", peer_preferred=False)
    # The live peer holds it, then its lease runs out without any presence or worker event.
    get_redis().set(ownership.lease_key(uid), live_peer, px=1_000)
    go_online(uid)
    wait_until(lambda: ready(worker, uid), timeout=10 + 3 * worker.config.claim_scan_s)
    assert ownership.owner(uid) == worker.worker_id
