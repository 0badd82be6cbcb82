"""Fan-out: one batched Redis message for many users, delivered locally by every gateway process, recoverable by since."""
from __future__ import annotations

import json
import logging
import threading

import pytest
import redis
from django.conf import settings

from realtime import fanout, publisher
from realtime.channels import history_key, user_channel
from realtime.publisher import publish_event, publish_to_many, wait_for_retry_queue
from tests.conftest import start_gateway, wait_until
from tests.realtime.test_ws_delivery import wait_for_subscription
from tests.realtime.wsclient import open_ws, recv_json


class ChannelCounter:
    """PSUBSCRIBE * on a thread: every pub/sub message Redis carried while the block ran, with its channel."""

    def __init__(self, port: int, cluster_ports: list[int] | None = None) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._pubsub = redis.Redis(port=port).pubsub(ignore_subscribe_messages=True)
        self._pubsub.psubscribe(**{"*": self._record})
        self._thread = self._pubsub.run_in_thread(sleep_time=0.01, daemon=True)
        wait_until(lambda: redis.Redis(port=port).pubsub_numpat() >= 1)
        if cluster_ports:
            self._drain_cluster_bus(cluster_ports)

    def _drain_cluster_bus(self, ports: list[int]) -> None:
        """On a cluster, a message published on another node reaches this one over the cluster bus, possibly after
        this counter started. A marker published on every node after it arrives behind anything older on the same
        link: once all markers are here, what an earlier test published is too, and is forgotten."""
        for port in ports:
            redis.Redis(port=port).publish("counter:barrier", str(port))
        wait_until(lambda: {data for name, data in self.messages if name == "counter:barrier"}
                   >= {str(port).encode() for port in ports})
        self.messages.clear()

    def _record(self, message: dict) -> None:
        self.messages.append((message["channel"].decode(), message["data"]))

    def on(self, channel: str) -> list[bytes]:
        return [data for name, data in self.messages if name == channel]

    def event_channels(self) -> list[str]:
        """Channels that carried events (presence announcements and control messages left out)."""
        return [name for name, _ in self.messages if name.startswith("user:") or name == settings.LISTENERS_FANOUT_CHANNEL]

    def __enter__(self) -> "ChannelCounter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._thread.stop()  # the worker thread closes the pub/sub connection itself on its way out
        self._thread.join(timeout=10)


def cluster_ports(stack) -> list[int] | None:
    return stack.redis_cluster.ports if stack.redis_cluster else None


@pytest.fixture(scope="module")
def second_gateway(stack):
    process, address = start_gateway(stack, name="asgi-fanout-2")
    yield address
    process.stop()


def history_entries(stack, uid: str) -> list[bytes]:
    entries = stack.redis_client().xrange(history_key(user_channel(uid)))
    return [fields[b"m"] for _, fields in entries]


def test_fanout_is_one_redis_message_and_each_process_delivers_each_users_own_envelope(
    stack, live_gateway, second_gateway, service_token
):
    uids = [f"fan{n}" for n in range(40)]
    before = {uid: publish_event(uid, "notif.sync", {"warm": True}).seq for uid in uids[:5]}  # some have a seq already
    sockets = {uid: open_ws(live_gateway if n % 2 else second_gateway, service_token, uid=uid)
               for n, uid in enumerate(uids)}
    try:
        for uid in uids:
            wait_for_subscription(user_channel(uid))
        with ChannelCounter(stack.redis_port, cluster_ports(stack)) as counter:
            results = publish_to_many(uids, "notif.sync", {"announcement": "maintenance at 22:00"})
            frames = {uid: recv_json(ws) for uid, ws in sockets.items()}
            wait_until(lambda: len(counter.on(settings.LISTENERS_FANOUT_CHANNEL)) == 1)
        assert counter.event_channels() == [settings.LISTENERS_FANOUT_CHANNEL]  # one message, nothing per user
    finally:
        for ws in sockets.values():
            ws.close()
    assert [r.channel for r in results] == [user_channel(uid) for uid in uids]
    assert len({r.event_id for r in results}) == len(uids)
    for uid, result in zip(uids, results):
        frame = frames[uid]
        assert frame["uid"] == uid and frame["type"] == "notif.sync"
        assert frame["payload"] == {"announcement": "maintenance at 22:00"}
        assert frame["seq"] == result.seq == before.get(uid, 0) + 1
        assert frame["event_id"] == result.event_id
        # The socket got exactly the bytes kept in the user's history (what `since` recovery replays).
        assert json.loads(history_entries(stack, uid)[-1]) == frame


def test_a_user_who_was_offline_during_a_fanout_recovers_it_with_since(live_gateway, service_token):
    first = publish_event("fan-late", "notif.sync", {"n": 1})
    publish_to_many(["fan-other", "fan-late"], "notif.sync", {"n": 2})
    publish_event("fan-late", "notif.sync", {"n": 3})
    with open_ws(live_gateway, service_token, uid="fan-late", since=str(first.seq)) as ws:
        events = [recv_json(ws), recv_json(ws)]
    assert [e["payload"]["n"] for e in events] == [2, 3]
    assert [e["seq"] for e in events] == [first.seq + 1, first.seq + 2]


def test_large_fanouts_are_chunked_and_every_recipient_is_counted_once(stack):
    uids = [f"bulk{n}" for n in range(publisher.FANOUT_CHUNK * 2 + 17)]
    with ChannelCounter(stack.redis_port, cluster_ports(stack)) as counter:
        results = publish_to_many(uids + uids[:10], "notif.sync", {"bulk": True})  # duplicates collapse
        wait_until(lambda: len(counter.on(settings.LISTENERS_FANOUT_CHANNEL)) == 3)
    assert len(results) == len(uids) and all(r.seq == 1 and not r.queued for r in results)
    assert counter.event_channels() == [settings.LISTENERS_FANOUT_CHANNEL] * 3
    batches = [fanout.decode(data) for data in counter.on(settings.LISTENERS_FANOUT_CHANNEL)]
    assert [len(b.uids) for b in batches] == [publisher.FANOUT_CHUNK, publisher.FANOUT_CHUNK, 17]
    assert sum((b.uids for b in batches), []) == uids
    assert all(len(history_entries(stack, uid)) == 1 for uid in (uids[0], uids[publisher.FANOUT_CHUNK + 1], uids[-1]))


def test_fanout_refuses_chat_events_and_empty_uids():
    with pytest.raises(ValueError):
        publish_to_many(["a"], "chat.message", {"space_code": "s", "thread_key": "t"})
    with pytest.raises(ValueError):
        publish_to_many(["a", ""], "notif.sync", {})
    assert publish_to_many([], "notif.sync", {}) == []


def test_malformed_fanout_messages_are_ignored_not_raised():
    assert fanout.decode(b"not json") is None
    assert fanout.decode(b'{"v":2}') is None
    assert fanout.decode(b'{"v":1,"head":"","middle":"","tail":"","event_id_base":"x","uids":["a"],"seqs":[]}') is None
    assert fanout.decode(b'{"v":1,"head":"","middle":"","tail":"","event_id_base":"x","uids":[1],"seqs":[1]}') is None


def test_a_fanout_during_a_redis_outage_is_queued_then_written_to_every_history(stack):
    uids = ["fan-outage-a", "fan-outage-b"]
    stack.processes["valkey"].kill()
    try:
        results = publish_to_many(uids, "notif.sync", {"during": "outage"})
        assert all(r.queued and r.seq is None for r in results)
    finally:
        stack.restart("valkey")
    assert wait_for_retry_queue(timeout=30)
    for uid in uids:
        (entry,) = history_entries(stack, uid)
        assert json.loads(entry)["payload"] == {"during": "outage"} and json.loads(entry)["uid"] == uid


def test_concurrent_fanouts_and_single_events_keep_each_users_seq_gapless(stack):
    uids = [f"fan-race{n}" for n in range(20)]
    threads = [threading.Thread(target=publish_to_many, args=(uids, "notif.sync", {"t": t})) for t in range(5)]
    threads += [threading.Thread(target=publish_event, args=(uids[0], "notif.sync", {"single": t})) for t in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seqs = [json.loads(m)["seq"] for m in history_entries(stack, uids[0])]
    assert seqs == list(range(1, 11))
    assert [json.loads(m)["seq"] for m in history_entries(stack, uids[7])] == [1, 2, 3, 4, 5]


def test_the_async_publisher_shares_seq_and_history_with_the_sync_one(stack, live_gateway, service_token):
    import asyncio

    from realtime.publisher import apublish_event

    with open_ws(live_gateway, service_token, uid="async-pub") as ws:
        wait_for_subscription(user_channel("async-pub"))
        first = publish_event("async-pub", "notif.sync", {"n": 1})
        second = asyncio.run(apublish_event("async-pub", "workflow.step_update", {"n": 2}, job_id="j-async"))
        frames = [recv_json(ws), recv_json(ws)]
    assert [f["seq"] for f in frames] == [first.seq, second.seq] == [1, 2]
    assert frames[1]["job_id"] == "j-async" and frames[1]["event_id"] == second.event_id
    assert [json.loads(m) for m in history_entries(stack, "async-pub")] == frames


def test_every_published_event_is_one_publish_line_at_debug(caplog):
    """The original service's ``publish`` log line: channel, type and the seq the event got."""
    with caplog.at_level(logging.DEBUG, logger="realtime.publisher"):
        single = publish_event("log-a", "notif.sync", {"n": 1})
        many = publish_to_many(["log-b", "log-c"], "notif.sync", {"n": 2})
    lines = [(r.msg["channel"], r.msg["seq"]) for r in caplog.records
             if isinstance(r.msg, dict) and r.msg.get("event") == "publish"]
    assert lines == [(result.channel, result.seq) for result in [single, *many]]
