"""Cluster fan-out: each node's slot scripts streamed on one of its connections, and the groups that fail that way.

Only with ``--redis-cluster`` (the 3-master local Valkey Cluster): on one Redis a chunk is one script.
"""
from __future__ import annotations

import json
import uuid

import pytest
import redis
from django.conf import settings as django_settings
from redis.crc import key_slot

from core.integrations.redis import get_redis
from realtime import fanout_publisher
from realtime.channels import history_key, seq_key, user_channel
from realtime.envelope import EnvelopeParts
from realtime.publisher import publish_to_many, wait_for_retry_queue
from tests.conftest import wait_until
from tests.realtime.monitoring import monitored
from tests.realtime.test_fanout import ChannelCounter


@pytest.fixture(autouse=True)
def _cluster_only(stack) -> None:
    if not stack.cluster_mode:
        pytest.skip("needs the 3-master cluster: run with --redis-cluster")


def _uids(tag: str, count: int = 40) -> list[str]:
    return [f"{tag}-{n}" for n in range(count)]  # about one slot each: several groups on every node


def _slot(uid: str) -> int:
    return key_slot(seq_key(user_channel(uid)).encode())


def _history(stack, uid: str) -> list[dict]:
    return [json.loads(fields[b"m"]) for _, fields in stack.redis_client().xrange(history_key(user_channel(uid)))]


def test_each_nodes_slot_scripts_go_on_one_connection_then_one_publish(stack):
    tag = f"per-node-{uuid.uuid4().hex[:8]}"
    publish_to_many(_uids(f"{tag}-warm"), "notif.sync", {"warm": True})  # every node has the script
    uids = _uids(tag)
    results: list = []
    seen = monitored(stack, lambda: results.extend(publish_to_many(uids, "notif.sync", {"n": 1})))
    assert all(not result.queued for result in results)
    client = get_redis()
    slots = {_slot(uid) for uid in uids}
    for port, entries in seen.items():
        scripts = [entry for entry in entries if entry.get("client_type") != "lua"
                   and entry["command"].startswith("EVALSHA") and tag in entry["command"]]
        owned = {slot for slot in slots if client.nodes_manager.get_node_from_slot(slot).port == port}
        assert len(scripts) == len(owned) > 0, port  # one script per slot group, no second attempt
        assert len({(entry["client_address"], entry["client_port"]) for entry in scripts}) == 1, port
    publishes = [entry for entries in seen.values() for entry in entries
                 if entry["command"].startswith(f"PUBLISH {django_settings.LISTENERS_FANOUT_CHANNEL} ")]
    assert len(publishes) == 1  # the chunk's recipients announced in one message


def test_a_slot_group_that_fails_is_queued_and_retried_while_the_others_are_announced(stack):
    tag = f"wrongtype-{uuid.uuid4().hex[:8]}"
    uids = _uids(tag)
    chunk = fanout_publisher._PendingFanout(uids, EnvelopeParts.build("notif.sync", {}), "x", "notif.sync")
    # Alone in its slot; its seq hash is the first key its group's script reads: it fails before any append.
    broken = next(group.uids[0] for group in chunk.slot_groups() if len(group.uids) == 1)
    client = stack.redis_client()
    client.set(seq_key(user_channel(broken)), "not a hash")
    try:
        with ChannelCounter(stack.redis_port, stack.redis_cluster.ports) as counter:
            results = publish_to_many(uids, "notif.sync", {"n": 1})
            assert [result.queued for result in results] == [uid == broken for uid in uids]
            wait_until(lambda: len(counter.on(django_settings.LISTENERS_FANOUT_CHANNEL)) >= 1)
            announced = json.loads(counter.on(django_settings.LISTENERS_FANOUT_CHANNEL)[0])
            assert announced["uids"] == [uid for uid in uids if uid != broken]
            assert announced["idx"] == [index for index, uid in enumerate(uids) if uid != broken]
            client.delete(seq_key(user_channel(broken)))  # the retry queue's next attempt succeeds
            assert wait_for_retry_queue(timeout=30)
            wait_until(lambda: len(counter.on(django_settings.LISTENERS_FANOUT_CHANNEL)) >= 2)
            retried = json.loads(counter.on(django_settings.LISTENERS_FANOUT_CHANNEL)[1])
            assert (retried["uids"], retried["idx"], retried["seqs"]) == ([broken], [uids.index(broken)], [1])
    finally:
        client.delete(seq_key(user_channel(broken)))
        assert wait_for_retry_queue(timeout=30)
    for uid in uids:
        assert [(entry["payload"], entry["seq"]) for entry in _history(stack, uid)] == [({"n": 1}, 1)], uid


def test_a_moved_slot_is_published_on_its_owner_and_the_slot_map_follows(stack):
    tag = f"moved-{uuid.uuid4().hex[:8]}"
    uids = _uids(tag)
    manager = get_redis().nodes_manager
    slot = _slot(uids[7])
    owner = manager.get_node_from_slot(slot)
    stale = next(node for node in get_redis().get_primaries() if node.name != owner.name)
    manager.slots_cache[slot] = [stale]  # what a client holds after a resharding moved the slot away
    try:
        results = publish_to_many(uids, "notif.sync", {"n": 1})
        assert all(not result.queued for result in results)
        assert manager.get_node_from_slot(slot).name == owner.name  # the MOVED reply corrected redis-py's map
    finally:
        manager.initialize()
    for uid in uids:
        assert [(entry["payload"], entry["seq"]) for entry in _history(stack, uid)] == [({"n": 1}, 1)], uid


def test_nodes_that_lost_the_script_get_it_again_and_nothing_is_queued(stack):
    for port in stack.redis_cluster.ports:
        redis.Redis(port=port).script_flush()
    tag = f"noscript-{uuid.uuid4().hex[:8]}"
    uids = _uids(tag)
    results = publish_to_many(uids, "notif.sync", {"n": 1})
    assert all(not result.queued for result in results)
    for uid in uids:
        assert [(entry["payload"], entry["seq"]) for entry in _history(stack, uid)] == [({"n": 1}, 1)], uid
