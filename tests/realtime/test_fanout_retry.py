"""A fan-out chunk retried after a lost reply (its node died after running the script) appends nothing twice.

The retry queue runs the very chunk again; running it twice here is that retry, on the real Valkey (single node, and
the 3-master cluster with ``--redis-cluster``, where a chunk is one script per slot).
"""
from __future__ import annotations

import json
import socket
import threading
import uuid

import pytest
from django.conf import settings as django_settings

from realtime import fanout_publisher
from realtime.channels import history_key, seq_key, user_channel
from core.integrations.redis import reset_clients
from realtime.envelope import EnvelopeParts
from realtime.publisher import publish_event, publish_to_many, wait_for_retry_queue
from tests.conftest import wait_until
from tests.realtime.monitoring import monitored
from tests.realtime.test_fanout import ChannelCounter
from tests.realtime.test_ws_delivery import wait_for_subscription
from tests.realtime.wsclient import open_ws, recv_json


def _chunk(uids: list[str], payload: dict) -> fanout_publisher._PendingFanout:
    return fanout_publisher._PendingFanout(uids, EnvelopeParts.build("notif.sync", payload), uuid.uuid4().hex[:24],
                                    "notif.sync")


def _run(chunk: fanout_publisher._PendingFanout) -> list[int | None]:
    """The chunk as publish_to_many runs it: one script, or one per slot on a cluster."""
    groups = chunk.slot_groups()
    return fanout_publisher._publish_by_slot(chunk, groups) if len(groups) > 1 else chunk.publish_now()


def _history(stack, uid: str) -> list[dict]:
    return [json.loads(fields[b"m"]) for _, fields in stack.redis_client().xrange(history_key(user_channel(uid)))]


def test_a_retried_fanout_chunk_gets_its_seqs_back_and_appends_nothing_twice(stack):
    tag = uuid.uuid4().hex[:8]
    uids = [f"retry-{tag}-{n}" for n in range(40)]  # several slots on a cluster
    publish_event(uids[3], "notif.sync", {"before": True})
    chunk = _chunk(uids, {"n": 1})
    first = _run(chunk)
    again = _run(chunk)  # what the retry queue does after the first reply was lost
    assert first == again and first[3] == 2 and set(first[:3]) == {1}
    for uid, seq in zip(uids, first):
        entries = [entry for entry in _history(stack, uid) if entry["payload"] == {"n": 1}]
        assert [entry["seq"] for entry in entries] == [seq], uid
    assert publish_event(uids[3], "notif.sync", {"after": True}).seq == 3  # no seq was used twice


def test_a_chunks_marker_is_a_field_of_its_first_recipients_seq_hash(stack):
    uids = [f"marker-{uuid.uuid4().hex[:8]}-{n}" for n in range(3)]
    chunk = _chunk(uids, {"n": 1})
    seqs = _run(chunk)
    client = stack.redis_client()
    firsts = [group.uids[0] for group in chunk.slot_groups()]  # the chunk's first recipient; on a cluster, each slot's
    for uid in uids:
        marker = client.hget(seq_key(user_channel(uid)), "fanout")
        expected = f"{chunk.event_id_base}:{seqs[uids.index(uid)]}" if len(firsts) > 1 else (
            f"{chunk.event_id_base}:{','.join(map(str, seqs))}")
        assert marker == (expected.encode() if uid in firsts else None), uid


def test_a_socket_gets_a_retried_fanout_event_once(stack, live_gateway, service_token):
    uid = f"retry-ws-{uuid.uuid4().hex[:8]}"
    others = [f"retry-ws-other-{n}" for n in range(20)]
    with open_ws(live_gateway, service_token, uid=uid) as ws:
        wait_for_subscription(user_channel(uid))
        chunk = _chunk([*others[:10], uid, *others[10:]], {"n": 1})
        first = _run(chunk)
        # A cluster re-announces a retried slot's recipients (the gateway drops the seq it has sent); one node does not.
        assert _run(chunk) == first
        single = publish_event(uid, "notif.sync", {"n": 2})
        frames = [recv_json(ws), recv_json(ws)]
    assert [(frame["payload"], frame["seq"]) for frame in frames] == [({"n": 1}, first[10]), ({"n": 2}, single.seq)]


def test_a_retried_chunk_runs_one_read_in_its_script_and_nothing_else(stack):
    tag = f"retry-cmd-{uuid.uuid4().hex[:8]}"
    uids = [f"{tag}-{n}" for n in range(5)]
    _run(_chunk(uids, {"n": 0}))  # not the channels' first event: no HSETNX of an epoch below
    chunk = _chunk(uids, {"n": 1})
    groups = chunk.slot_groups()
    first_run = _script_commands(stack, tag, lambda: _run(chunk))
    retry = _script_commands(stack, tag, lambda: _run(chunk))
    # Per recipient: HINCRBY, EXPIRE, XADD, EXPIRE (HSETNX only on a channel's first event); per chunk (or slot group)
    # HGET, HSET of the marker, and on one Redis the PUBLISH.
    assert len(first_run) == 4 * len(uids) + 2 * len(groups) + (1 if len(groups) == 1 else 0), first_run
    assert [command.split()[0] for command in retry] == ["HGET"] * len(groups), retry


def _script_commands(stack, marker: str, action) -> list[str]:
    """The commands scripts ran (MONITOR's ``lua`` entries on every node) that name ``marker``, while ``action`` ran."""
    seen = monitored(stack, action)
    return [entry["command"] for entries in seen.values() for entry in entries
            if entry.get("client_type") == "lua" and marker in entry["command"]]


class ReplyDroppingProxy:
    """A TCP proxy in front of one Valkey. Armed, it drops the next reply and closes that connection: the commands
    already forwarded run, their replies never arrive (a node that died after running them)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed, self.dropped = threading.Event(), threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, replies: bool) -> None:
        try:
            while data := source.recv(65536):
                if replies and self.armed.is_set():
                    self.armed.clear()
                    self.dropped.set()
                    break
                target.sendall(data)
        except OSError:
            pass
        for end in (source, target):
            end.close()

    def close(self) -> None:
        self.listener.close()


def test_a_fanout_whose_replies_were_lost_is_retried_without_a_second_append_or_message(stack, settings):
    if stack.cluster_mode:
        pytest.skip("the proxy stands in front of one Valkey; the cluster's slot groups are covered above")
    proxy = ReplyDroppingProxy(stack.redis_port)
    direct = settings.REDIS_URL
    settings.REDIS_URL = f"redis://127.0.0.1:{proxy.port}/0"
    reset_clients()
    tag = f"lost-{uuid.uuid4().hex[:8]}"
    uids = [f"{tag}-{n}" for n in range(fanout_publisher.FANOUT_CHUNK * 3 + 5)]
    try:
        publish_to_many([f"{tag}-warm"], "notif.sync", {"warm": True})  # the pool's connection is open and reused
        with ChannelCounter(stack.redis_port) as counter:
            proxy.armed.set()
            results = publish_to_many(uids, "notif.sync", {"n": 1})
            assert proxy.dropped.is_set() and all(result.queued for result in results)
            assert wait_for_retry_queue(timeout=30)
            wait_until(lambda: len(counter.on(django_settings.LISTENERS_FANOUT_CHANNEL)) >= 4)
            later = publish_event(f"{tag}-after", "notif.sync", {})  # published after any retry: counted once it is in
            wait_until(lambda: any(name == later.channel for name, _ in counter.messages))
        # One message per chunk: a chunk that had run before its reply was lost published nothing on its retry.
        assert len(counter.on(django_settings.LISTENERS_FANOUT_CHANNEL)) == 4
    finally:
        settings.REDIS_URL = direct
        reset_clients()
        proxy.close()
    for uid in (uids[0], uids[fanout_publisher.FANOUT_CHUNK], uids[-1]):
        assert [(entry["payload"], entry["seq"]) for entry in _history(stack, uid)] == [({"n": 1}, 1)], uid
