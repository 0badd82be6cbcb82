"""A fan-out's chunks: streamed on one connection on a single Redis, queued from the first that fails (real Valkey)."""
from __future__ import annotations

import json
import uuid

import pytest

from realtime.channels import history_key, seq_key, user_channel
from realtime.fanout_publisher import FANOUT_CHUNK, _resp
from realtime.publisher import publish_to_many, wait_for_retry_queue
from tests.registry.round_trips import top_level_commands


def test_the_streamed_scripts_are_packed_as_redis_py_packs_them():
    from redis.connection import Connection

    command = ("EVALSHA", "a" * 40, 2, "rt:{user:é}:seq", "rt:{user:é}:hist", '"\u00e9"', 600, "")
    assert _resp(*command) == b"".join(Connection().pack_command(*command))


def test_a_fanout_on_one_redis_is_one_script_call_per_chunk_and_nothing_else(stack):
    if stack.cluster_mode:
        pytest.skip("a cluster runs a chunk as one script per slot (tests/realtime/test_fanout.py)")
    tag = f"stream-{uuid.uuid4().hex[:8]}"
    uids = [f"{tag}-{n}" for n in range(FANOUT_CHUNK * 3 + 1)]
    publish_to_many(uids[:2], "notif.sync", {"warm": True})  # the script is cached, the pool has a connection
    results = []
    commands = top_level_commands(stack, tag, lambda: results.append(publish_to_many(uids, "notif.sync", {"n": 1})))
    assert all(result.seq is not None for result in results[0])
    assert [command.split()[0] for command in commands] == ["EVALSHA"] * 4, commands


def test_a_chunk_that_fails_is_queued_with_what_follows_it_and_published_once_redis_takes_it(stack):
    tag = f"stream-fail-{uuid.uuid4().hex[:8]}"
    uids = [f"{tag}-{n}" for n in range(FANOUT_CHUNK * 4)]
    broken = uids[2 * FANOUT_CHUNK]  # the first recipient of the third chunk: its script fails before any write
    client = stack.redis_client()
    client.set(seq_key(user_channel(broken)), "not a hash")
    try:
        results = publish_to_many(uids, "notif.sync", {"n": 1})
        by_uid = {result.channel: result for result in results}
        assert all(by_uid[user_channel(uid)].seq == 1 for uid in uids[:2 * FANOUT_CHUNK])
        assert by_uid[user_channel(broken)].queued
        # One Redis: the fourth chunk was already sent when the third's reply came, and was published. A cluster
        # publishes chunk by chunk: what follows a queued chunk is queued behind it.
        fourth = [by_uid[user_channel(uid)] for uid in uids[3 * FANOUT_CHUNK:]]
        assert all(r.queued for r in fourth) if stack.cluster_mode else all(r.seq == 1 for r in fourth)
    finally:
        client.delete(seq_key(user_channel(broken)))
    assert wait_for_retry_queue(timeout=30)
    for uid in (broken, uids[2 * FANOUT_CHUNK + 1], uids[-1], uids[0]):
        entries = [json.loads(fields[b"m"]) for _, fields in client.xrange(history_key(user_channel(uid)))]
        assert [(entry["payload"], entry["seq"]) for entry in entries] == [({"n": 1}, 1)], uid
