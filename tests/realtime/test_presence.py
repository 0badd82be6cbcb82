"""Presence across sockets and processes, on a live server and real Valkey."""
from __future__ import annotations

import time

import pytest

from realtime import presence
from tests.conftest import start_gateway, wait_until
from tests.realtime.wsclient import open_ws


def test_closing_one_socket_keeps_the_user_online_closing_both_takes_it_offline(live_gateway, service_token):
    first = open_ws(live_gateway, service_token, uid="p1")
    second = open_ws(live_gateway, service_token, uid="p1", space_code="s", thread_key="t")
    wait_until(lambda: len(presence.live_members("p1")) == 2)
    assert presence.is_online("p1")
    first.close()
    wait_until(lambda: len(presence.live_members("p1")) == 1)
    assert presence.is_online("p1")
    assert presence.chat_interests(presence.live_members("p1")) == {presence.ChatInterest("s", "t", "")}
    second.close()
    started = time.monotonic()
    wait_until(lambda: not presence.is_online("p1"), timeout=5, interval=0.01)
    assert time.monotonic() - started < 1.0
    assert "p1" not in presence.online_uids()


def test_presence_events_announce_transitions(live_gateway, service_token, stack):

    pubsub = stack.redis_client().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(presence.EVENTS_CHANNEL)
    wait_until(lambda: pubsub.subscribed)
    def next_event_of_p2():  # the shared gateway may still announce an earlier test's user (seen on the cluster)
        message = pubsub.get_message(timeout=0.2)
        event = presence.parse_event(message["data"]) if message else None
        return event if event and event["uid"] == "p2" else None

    with open_ws(live_gateway, service_token, uid="p2"):
        assert wait_until(next_event_of_p2) == {"uid": "p2", "online": True, "came_online": True}
    assert wait_until(next_event_of_p2) == {"uid": "p2", "online": False, "went_offline": True}


def test_sessions_and_sockets_share_one_reference_count(live_gateway, service_token):
    presence.join("p3", presence.session_member("sess-1"))
    with open_ws(live_gateway, service_token, uid="p3"):
        wait_until(lambda: len(presence.live_members("p3")) == 2)
    wait_until(lambda: len(presence.live_members("p3")) == 1)
    assert presence.is_online("p3")
    assert presence.leave("p3", presence.session_member("sess-1")) is True
    assert not presence.is_online("p3")


@pytest.mark.slow
def test_a_killed_process_sockets_expire_by_ttl(stack, service_token, live_gateway):
    """SIGKILL a server holding a socket: no close handler runs, the TTL expires it and a sweeper takes it offline."""
    doomed, address = start_gateway(stack, extra_env={"LISTENERS_TTL_SECONDS": "2", "LISTENERS_HEARTBEAT_INTERVAL": "1"},
                                     name="asgi-doomed")
    try:
        ws = open_ws(address, service_token, uid="p4")
        wait_until(lambda: presence.is_online("p4"))
        doomed.kill()
        ws.close_socket()
        # The surviving live_gateway process sweeps while it has sockets of its own.
        with open_ws(live_gateway, service_token, uid="p5"):
            wait_until(lambda: not presence.is_online("p4"), timeout=20)
        assert presence.live_members("p4") == []
    finally:
        doomed.stop()


def test_sweep_removes_only_expired_members(settings):
    settings.LISTENERS_TTL_SECONDS = 1
    presence.join("p6", "ws:a")
    settings.LISTENERS_TTL_SECONDS = 60
    presence.join("p7", "ws:b")
    wait_until(lambda: presence.sweep() == ["p6"] or not presence.is_online("p6"), timeout=5)
    assert not presence.is_online("p6") and presence.is_online("p7")


def test_staff_disconnect_closes_every_socket_of_that_user_only(live_gateway, service_token):
    from realtime.control import disconnect_user_sockets
    from tests.realtime.wsclient import close_code, recv_json

    first = open_ws(live_gateway, service_token, uid="p8")
    second = open_ws(live_gateway, service_token, uid="p8", space_code="s", thread_key="t")
    other = open_ws(live_gateway, service_token, uid="p9")
    wait_until(lambda: len(presence.live_members("p8")) == 2 and presence.is_online("p9"))
    assert disconnect_user_sockets("p8") >= 1
    assert close_code(first) == 4000 and close_code(second) == 4000
    wait_until(lambda: not presence.is_online("p8"), timeout=5)
    other.send('{"type":"ping"}')
    assert recv_json(other) == {"type": "pong"}
    other.close()
