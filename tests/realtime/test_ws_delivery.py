"""Live uvicorn + real Valkey: envelopes, channels, auth, chat isolation, ping, recovery."""
from __future__ import annotations

import json
import re

import pytest
import redis

from core.integrations.redis import subscriber_count
from registry import services as registry_services
from registry import ws_tokens
from realtime import presence
from realtime.channels import history_key, user_channel
from realtime.publisher import publish_event
from tests.conftest import start_gateway, wait_until
from tests.realtime.wsclient import close_code, open_ws, recv_events, recv_json

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def user_token(uid: str) -> str:
    """A /ws user token as the registry issues it: bound to a live session of the user."""
    registry_services.register_session(user_id=uid, session_id=f"s-{uid}")
    return ws_tokens.issue(uid)[0]


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
    token = {"service": service_token, "wrong": "nope", "other-user": user_token("someone-else")}.get(token_kind)
    with open_ws(live_gateway, token, **params) as ws:
        assert close_code(ws) == expected


def test_user_token_opens_only_its_own_uid_and_works_as_query_param(live_gateway):
    token = user_token("u7")
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


def test_a_socket_starts_at_the_channel_position_it_connected_at(stack, live_gateway, service_token):
    """A message older than the socket that arrives late (on a cluster, PUBLISH crosses the cluster bus after the
    publisher's reply) is not delivered: the socket starts where the channel was when it connected."""
    old = publish_event("u-late", "notif.sync", {"n": "before the socket"})
    old_message = stack.redis_client().xrange(history_key(user_channel("u-late")))[-1][1][b"m"]
    with open_ws(live_gateway, service_token, uid="u-late") as ws:
        wait_for_subscription("user:u-late")
        stack.redis_client().publish("user:u-late", old_message)  # the late copy of an event from before
        new = publish_event("u-late", "notif.sync", {"n": "after"})
        frame = recv_json(ws)
    assert (frame["seq"], frame["payload"]) == (old.seq + 1, {"n": "after"}) and new.seq == old.seq + 1


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


def test_connect_and_disconnect_are_logged_with_the_original_names(stack, service_token):
    process, address = start_gateway(stack, extra_env={"LOG_LEVEL": "INFO"}, name="asgi-info-logs")
    logfile = process.logfile

    def logged(event: str) -> list[dict]:
        lines = [json.loads(line) for line in logfile.read_text().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("event") == event and line.get("uid") == "u-logged"]

    token_of_user = user_token("u-logged")
    try:
        ws = open_ws(address, token_of_user, header_token=False, uid="u-logged")  # as a browser must: ?token=
        wait_until(lambda: logged("ws_connect"))
        ws.close()
        (disconnect,) = wait_until(lambda: logged("ws_disconnect"))
        assert disconnect["code"] == 1000 and logged("ws_connect")[0]["channel"].endswith("u-logged")
        text = logfile.read_text()
        assert "/ws?uid=u-logged&token=[redacted]" in text  # the server's own request line, scrubbed
        assert token_of_user not in text and service_token not in text
    finally:
        process.stop()


def test_a_user_token_opens_a_chat_socket_only_on_its_own_space_and_an_existing_thread(live_gateway):
    from core.integrations.firebase import get_firestore
    from core.integrations.rtdb import reference

    reference("sp-real/chats/t-real").set({"thread_name": "T"})
    reference("sp-other/chats/t-real").set({"thread_name": "T"})
    get_firestore().document("clients/u-chat/bo_clients/c1/mandates/m1").set({"contact_space_id": "sp-real"})
    token = user_token("u-chat")
    with open_ws(live_gateway, token, uid="u-chat", space_code="sp-other", thread_key="t-real") as ws:
        assert close_code(ws) == 4403  # another company's space
    with open_ws(live_gateway, token, uid="u-chat", space_code="sp-real", thread_key="t-missing") as ws:
        assert close_code(ws) == 4404
    with open_ws(live_gateway, token, uid="u-chat", space_code="sp-real", thread_key="t-real") as ws:
        wait_for_subscription("chat:u-chat:sp-real:t-real")
        ws.send('{"type":"ping"}')
        assert recv_json(ws) == {"type": "pong"}


def test_chat_sockets_per_user_are_capped_across_connections(live_gateway, service_token, settings):
    cap = settings.LISTENERS_WS_MAX_CHAT_SOCKETS  # the gateway process reads the same default
    sockets = [open_ws(live_gateway, service_token, uid="u-cap", space_code="sp", thread_key=f"t{n}")
               for n in range(cap)]
    try:
        wait_until(lambda: sum("|" in member for member in presence.live_members("u-cap")) == cap)
        with open_ws(live_gateway, service_token, uid="u-cap", space_code="sp", thread_key="one-more") as extra:
            assert close_code(extra) == 4429
        with open_ws(live_gateway, service_token, uid="u-cap") as plain:  # the user's own stream is not capped
            wait_for_subscription("user:u-cap")
            plain.send('{"type":"ping"}')
            assert recv_json(plain) == {"type": "pong"}
    finally:
        for ws in sockets:
            ws.close()
