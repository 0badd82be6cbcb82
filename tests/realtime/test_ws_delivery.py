"""Live uvicorn + real Valkey: envelopes, channels, auth, chat isolation, ping, recovery."""
from __future__ import annotations

import json
import re

import pytest
import redis

from core.integrations.redis import subscriber_count
from realtime.auth import mint_user_token
from realtime.publisher import publish_event
from tests.conftest import wait_until
from tests.realtime.wsclient import close_code, open_ws, recv_events, recv_json

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def subscriber(stack, channel: str) -> redis.client.PubSub:
    pubsub = stack.redis_client().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    wait_until(lambda: pubsub.get_message(timeout=0.1) is None and pubsub.subscribed)
    return pubsub


def next_message(pubsub: redis.client.PubSub, timeout: float = 15.0) -> dict:
    message = wait_until(lambda: pubsub.get_message(timeout=0.2), timeout=timeout)
    return json.loads(message["data"])


def test_redis_subscriber_and_websocket_receive_the_same_envelope(stack, live_gateway, service_token):
    pubsub = subscriber(stack, "user:u1")
    with open_ws(live_gateway, service_token, uid="u1") as ws:
        wait_until(lambda: subscriber_count("user:u1") >= 2)
        result = publish_event("u1", "notif.job_updated", {"job_id": "j1", "status": "done"})
        from_ws = recv_json(ws)
    from_redis = next_message(pubsub)
    assert from_ws == from_redis
    assert set(from_ws) >= {"type", "uid", "timestamp", "payload", "event_id", "seq"}
    assert from_ws["type"] == "notif.job_updated" and from_ws["uid"] == "u1"
    assert from_ws["payload"] == {"job_id": "j1", "status": "done"}
    assert ISO_Z.match(from_ws["timestamp"])
    assert from_ws["seq"] == result.seq == 1 and from_ws["event_id"] == result.event_id


def test_seq_increases_by_one_per_channel_and_workflow_events_carry_job_id(live_gateway, service_token):
    with open_ws(live_gateway, service_token, uid="u2") as ws:
        wait_for_subscription("user:u2")
        for n in range(3):
            publish_event("u2", "workflow.step_update", {"step_changes": {"n": n}}, job_id="job-9")
        events = recv_events(ws, 3)
    assert [e["seq"] for e in events] == [1, 2, 3]
    assert all(e["job_id"] == "job-9" for e in events)
    assert len({e["event_id"] for e in events}) == 3


def wait_for_subscription(channel: str, count: int = 1) -> None:
    wait_until(lambda: subscriber_count(channel) >= count)


@pytest.mark.parametrize(
    ("params", "token_kind", "expected"),
    [
        ({"uid": "u1"}, None, 4401),
        ({"uid": "u1"}, "wrong", 4401),
        ({"uid": "u1"}, "other-user", 4403),
        ({}, "service", 4400),
        ({"uid": "u1", "space_code": "s"}, "service", 4400),
        ({"uid": "u1", "since": "abc"}, "service", 4400),
    ],
)
def test_refused_connections_are_closed_with_4xxx_before_any_event(live_gateway, service_token, params, token_kind, expected):
    token = {"service": service_token, "wrong": "nope", "other-user": mint_user_token("someone-else")[0]}.get(token_kind)
    with open_ws(live_gateway, token, **params) as ws:
        assert close_code(ws) == expected


def test_user_token_opens_only_its_own_uid_and_works_as_query_param(live_gateway):
    token, _ = mint_user_token("u7")
    with open_ws(live_gateway, token, header_token=False, uid="u7") as ws:
        wait_for_subscription("user:u7")
        publish_event("u7", "msg.new", {"message": {"id": "m1"}})
        assert recv_json(ws)["type"] == "msg.new"


def test_chat_socket_receives_only_its_thread(live_gateway, service_token):
    with open_ws(live_gateway, service_token, uid="u3", space_code="sp", thread_key="t1") as chat_ws, \
         open_ws(live_gateway, service_token, uid="u3") as user_ws:
        wait_for_subscription("chat:u3:sp:t1")
        wait_for_subscription("user:u3")
        publish_event("u3", "chat.message", {"space_code": "sp", "thread_key": "t2", "raw_messages": []})
        publish_event("u3", "notif.sync", {"notifications": [], "count": 0})
        publish_event("u3", "chat.message", {"space_code": "sp", "thread_key": "t1", "raw_messages": [{"id": "a"}]})
        got = recv_json(chat_ws)
        assert got["payload"]["thread_key"] == "t1" and got["type"] == "chat.message"
        assert recv_json(user_ws)["type"] == "notif.sync"
        chat_ws.send('{"type":"ping"}')
        assert recv_json(chat_ws) == {"type": "pong"}  # nothing else was queued for this socket


def test_reconnect_with_since_gets_exactly_the_missed_events(live_gateway, service_token):
    for n in range(10):
        publish_event("u4", "notif.sync", {"n": n})
    missed = [publish_event("u4", "notif.sync", {"n": 100 + n}).seq for n in range(50)]
    with open_ws(live_gateway, service_token, uid="u4", since="10") as ws:
        events = recv_events(ws, 50)
        assert [e["seq"] for e in events] == missed == list(range(11, 61))
        assert [e["payload"]["n"] for e in events] == [100 + n for n in range(50)]
        wait_for_subscription("user:u4")
        publish_event("u4", "notif.sync", {"n": "live"})
        assert recv_json(ws)["seq"] == 61


def test_since_beyond_history_gets_recovery_failed(live_gateway, service_token, settings):
    size = settings.LISTENERS_HISTORY_SIZE
    for n in range(size + 20):
        publish_event("u5", "notif.sync", {"n": n})
    with open_ws(live_gateway, service_token, uid="u5", since="3") as ws:
        failed = recv_json(ws)
        assert failed["type"] == "recovery.failed"
        assert failed["payload"]["since"] == 3 and failed["payload"]["current_seq"] == size + 20
        wait_for_subscription("user:u5")
        publish_event("u5", "notif.sync", {"n": "after"})
        assert recv_json(ws)["seq"] == size + 21


def test_since_from_the_future_gets_recovery_failed(live_gateway, service_token):
    publish_event("u6", "notif.sync", {})
    with open_ws(live_gateway, service_token, uid="u6", since="99") as ws:
        assert recv_json(ws)["type"] == "recovery.failed"
