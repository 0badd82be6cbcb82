"""A write's response names the events it published (``"events": [{"channel", "seq"}]``), so a client can wait on its
socket for its own write; the replay of an idempotent write names the same ones; a call that published nothing keeps
the contract's envelope byte for byte."""
from __future__ import annotations

import json
import uuid

import httpx

from core import provenance
from core.integrations.redis import subscriber_count
from tests.conftest import wait_until
from tests.realtime.wsclient import job_write, open_ws, recv_type


def write(rpc, method: str, *args, **kwargs):
    return rpc(f"RPCTEST.{method}", *args, user_id="alice", idempotency_key=kwargs.pop("key", uuid.uuid4().hex),
               kwargs=kwargs)


def test_a_write_names_each_event_it_published_with_its_seq(rpc):
    first = write(rpc, "publish_events", "alice", count=2)
    assert first.data == 2
    assert first.body["events"] == [{"channel": "user:alice", "seq": 1}, {"channel": "user:alice", "seq": 2}]
    second = write(rpc, "publish_events", "alice")
    assert second.body["events"] == [{"channel": "user:alice", "seq": 3}]  # this call's events only


def test_a_call_that_published_nothing_has_no_events_member(rpc):
    response = rpc("REGISTRY.ping")
    assert set(response.body) == {"ok", "data", "trace_id"}
    assert set(write(rpc, "publish_events", "alice", count=0).body) == {"ok", "data", "trace_id"}


def test_the_async_publisher_and_a_fan_out_are_named_too(rpc):
    assert write(rpc, "publish_events_async", "alice").body["events"] == [{"channel": "user:alice", "seq": 1}]
    fanned = write(rpc, "publish_to_users", "alice", others=["bob", "carol"])
    assert fanned.body["events"] == [{"channel": "user:alice", "seq": 2}, {"channel": "user:bob", "seq": 1},
                                     {"channel": "user:carol", "seq": 1}]


def test_the_replay_of_an_idempotent_write_names_the_same_events(rpc):
    key = uuid.uuid4().hex
    first = write(rpc, "publish_events", "alice", count=2, key=key)
    replay = write(rpc, "publish_events", "alice", count=2, key=key)
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.raw == first.raw and replay.body["events"][-1] == {"channel": "user:alice", "seq": 2}
    assert write(rpc, "publish_events", "alice").body["events"] == [{"channel": "user:alice", "seq": 3}]


def test_a_write_that_failed_after_publishing_names_what_it_published(rpc):
    failed = write(rpc, "publish_events", "alice", fail=True)
    assert failed.code == "NOT_FOUND"
    assert failed.body["events"] == [{"channel": "user:alice", "seq": 1}]


def test_a_response_names_at_most_the_first_hundred_events(rpc):
    others = [f"u{n}" for n in range(provenance.MAX_EVENTS_IN_RESPONSE + 50)]
    response = write(rpc, "publish_to_users", "alice", others=others)
    assert response.data == len(others) + 1
    assert len(response.body["events"]) == provenance.MAX_EVENTS_IN_RESPONSE
    assert response.body["events"][0] == {"channel": "user:alice", "seq": 1}


def test_the_seq_in_the_response_is_the_seq_the_socket_receives(stack, live_gateway, service_token):
    """Through the production /rpc (uvicorn, RpcEndpoint) and /ws: a real Firestore write that publishes."""
    uid = "events_owner"
    with open_ws(live_gateway, service_token, uid=uid) as ws:
        wait_until(lambda: subscriber_count(f"user:{uid}") >= 1)
        response = httpx.post(f"http://{live_gateway}/rpc", content=json.dumps(job_write(uid, "job_7")).encode(), timeout=30,
                              headers={"Authorization": f"Bearer {service_token}",
                                       "Content-Type": "application/json"}).json()
        assert response["ok"] is True, response
        [published] = response["events"]
        event = recv_type(ws, "notif.job_updated")
    assert published == {"channel": f"user:{uid}", "seq": event["seq"]}
    assert event["trace_id"] == response["trace_id"]
