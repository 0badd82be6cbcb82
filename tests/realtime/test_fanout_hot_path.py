"""The fan-out's hot path (the protocol's synchronous send) keeps every guarantee of the queued one, and a channel's
first event needs no Redis read."""
from __future__ import annotations

import json
import uuid
from urllib.parse import urlencode

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from realtime import fanout
from realtime.channels import seq_key, user_channel
from realtime.envelope import EnvelopeParts, fanout_event_id
from realtime.publisher import publish_event, publish_to_many
from tests.conftest import start_gateway
from tests.realtime.test_ws_delivery import wait_for_subscription
from tests.realtime.wsclient import open_ws, recv_events, recv_json
from tests.registry.round_trips import top_level_commands


@pytest.fixture(scope="module")
def small_queue_gateway(stack):
    process, address = start_gateway(stack, extra_env={"LISTENERS_WS_SEND_QUEUE": "64"}, name="asgi-hot-smallq")
    yield address
    process.stop()


@pytest.fixture(scope="module")
def stock_protocol_gateway(stack):
    """uvicorn's own websockets-sansio protocol: no synchronous send, so every frame goes by the socket's writer."""
    process, address = start_gateway(stack, name="asgi-stock-ws", server_options=["--ws", "websockets-sansio"])
    yield address
    process.stop()


def test_a_fanout_recipient_that_stops_reading_is_closed_with_4008_and_the_others_get_every_event(
    small_queue_gateway, service_token
):
    slow_uid, fast_uids = f"hot-slow-{uuid.uuid4().hex[:6]}", [f"hot-fast{n}-{uuid.uuid4().hex[:6]}" for n in range(2)]
    # max_queue=1: the client library stops reading the socket after one unread frame -> real TCP backpressure.
    slow = connect(f"ws://{small_queue_gateway}/ws?{urlencode({'uid': slow_uid, 'token': service_token})}",
                   max_queue=1, open_timeout=15)
    fast = {uid: open_ws(small_queue_gateway, service_token, uid=uid) for uid in fast_uids}
    for uid in [slow_uid, *fast_uids]:
        wait_for_subscription(user_channel(uid))
    blob = "x" * 8192
    try:
        for n in range(2000):
            publish_to_many([slow_uid, *fast_uids], "notif.sync", {"n": n, "blob": blob})
            for ws in fast.values():  # every fan-out reaches the readers, in order, while the slow one backs up
                event = recv_json(ws)
                assert (event["payload"]["n"], event["seq"]) == (n, n + 1)
        closed_code = None
        try:
            while True:
                slow.recv(timeout=15)
        except ConnectionClosed as exc:
            closed_code = exc.rcvd.code if exc.rcvd else None
        assert closed_code == 4008
        publish_to_many([slow_uid, *fast_uids], "notif.sync", {"n": "after"})
        assert all(recv_json(ws)["payload"]["n"] == "after" for ws in fast.values())
    finally:
        for ws in fast.values():
            ws.close()


def test_a_brand_new_channels_first_event_is_sent_without_a_history_read(stack, live_gateway, service_token):
    uid = f"hot-new-{uuid.uuid4().hex[:10]}"
    publish_event(f"{uid}-warm", "notif.sync", {"warm": True})  # the publish script cached on the nodes (no NOSCRIPT)
    with open_ws(live_gateway, service_token, uid=uid) as ws:
        wait_for_subscription(user_channel(uid))
        frames = []
        commands = top_level_commands(
            stack, uid, lambda: (publish_event(uid, "notif.sync", {"n": 1}), frames.append(recv_json(ws))))
    assert frames[0]["seq"] == 1 and frames[0]["payload"] == {"n": 1}
    # The publisher's one script names the channel's seq hash; before, the gateway read it too (HMGET n epoch).
    touching = [command for command in commands if seq_key(user_channel(uid)) in command]
    assert len(touching) == 1 and touching[0].startswith("EVALSHA"), touching


def test_the_epoch_a_socket_gave_a_new_channel_is_the_one_its_events_and_recovery_use(
    stack, live_gateway, service_token
):
    uid = f"hot-epoch-{uuid.uuid4().hex[:10]}"
    with open_ws(live_gateway, service_token, uid=uid) as ws:
        wait_for_subscription(user_channel(uid))
        epoch = stack.redis_client().hget(seq_key(user_channel(uid)), "epoch")
        assert epoch and stack.redis_client().ttl(seq_key(user_channel(uid))) > 0  # never a key without expiry
        publish_event(uid, "notif.sync", {"n": 1})
        assert recv_json(ws)["seq"] == 1
    assert stack.redis_client().hget(seq_key(user_channel(uid)), "epoch") == epoch  # the publisher kept it
    publish_event(uid, "notif.sync", {"n": 2})
    with open_ws(live_gateway, service_token, uid=uid, since="1") as ws:
        assert recv_json(ws)["payload"] == {"n": 2}


def test_without_the_servers_synchronous_send_every_frame_still_arrives_in_order(stock_protocol_gateway,
                                                                                 service_token):
    uids = [f"hot-stock{n}-{uuid.uuid4().hex[:6]}" for n in range(3)]
    sockets = [open_ws(stock_protocol_gateway, service_token, uid=uid) for uid in uids]
    try:
        for uid in uids:
            wait_for_subscription(user_channel(uid))
        for n in range(5):
            publish_to_many(uids, "notif.sync", {"n": n})
        publish_event(uids[0], "notif.sync", {"n": 5})
        assert [(e["seq"], e["payload"]["n"]) for e in recv_events(sockets[0], 6)] == [(n + 1, n) for n in range(6)]
        assert [e["seq"] for e in recv_events(sockets[2], 5)] == [1, 2, 3, 4, 5]
    finally:
        for ws in sockets:
            ws.close()


def test_fanout_envelopes_are_the_bytes_the_single_event_path_builds():
    parts = EnvelopeParts.build("notif.sync", {"text": "é\u2028 \"quoted\"", "n": [1, 2]})
    uids = ["plain", "ünï\"code\\", "\U0001f600"]
    for positions in (None, [4, 9, 1023]):
        batch = fanout.FanoutBatch(parts, "base", uids, [7, 1, 12345], positions)
        built = list(batch.envelopes(lambda uid: uid != "plain" and uid))
        assert [(local, seq) for local, _, seq in built] == [(uids[1], 1), (uids[2], 12345)]
        for (_, envelope, seq), index in zip(built, (1, 2)):
            position = index if positions is None else positions[index]
            assert envelope == parts.complete(uids[index], fanout_event_id("base", position), seq).encode()
            assert json.loads(envelope)["uid"] == uids[index]
