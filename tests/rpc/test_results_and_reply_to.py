"""JSON-safe results (with the real Firestore emulator) and reply_to delivery over the real Valkey."""
from __future__ import annotations

import json
import time

import pytest

from core.serialization import canonical, dumps, json_default

from .methods_for_tests import runs

pytestmark = pytest.mark.django_db


def test_results_are_json_safe(rpc):
    data = rpc("RPCTEST.rich_result").data
    assert data == {
        "aware": "2024-05-06T07:30:00Z",            # converted to UTC
        "naive": "2024-05-06T07:30:00Z",            # taken as UTC
        "micro": "2024-05-06T07:30:00.123456Z",
        "day": "2024-05-06",
        "blob": "AP9oaQ==",                          # base64
        "amount": "10.10",                           # exact
        "tags": ["only"],
        "pair": [1, 2],
        "nan": None,                                 # never the invalid token NaN
    }


def test_firestore_timestamps_and_references_from_the_emulator(rpc):
    data = rpc("RPCTEST.firestore_roundtrip", "alice", "doc1", user_id="alice", idempotency_key="fs-1").data
    assert data["id"] == "doc1"
    assert data["self"] == "clients/alice/rpctest/doc1"
    assert data["blob"] == "YWJj"
    assert data["when"].endswith("Z") and data["when"][:2] == "20" and "T" in data["when"]


def test_serialisation_helpers_keep_their_contract():
    import datetime as dt
    import decimal

    assert dumps({"a": dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)}) == b'{"a":"2024-01-01T00:00:00Z"}'
    assert canonical({"b": 1, "a": [decimal.Decimal("1.5")]}) == b'{"a":["1.5"],"b":1}'
    assert json.dumps({"s": {1}}, default=json_default) == '{"s": [1]}'  # still usable with the stdlib
    with pytest.raises(TypeError):
        dumps(object())


def next_reply(subscriber, timeout: float = 15.0) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = subscriber.get_message(timeout=0.5)
        if message and message["type"] == "message":
            return message["data"]
    raise AssertionError("no reply published")


def test_reply_to_receives_the_full_success_envelope(rpc, reply_channel):
    result = rpc("REGISTRY.ping", reply_to="redis:reply:test-session")
    assert next_reply(reply_channel) == result.raw


def test_reply_to_receives_errors_too(rpc, reply_channel):
    not_found = rpc("REGISTRY.nothing", reply_to="redis:reply:test-session")
    assert next_reply(reply_channel) == not_found.raw
    internal = rpc("RPCTEST.raise_runtime_error", reply_to="redis:reply:test-session")
    assert next_reply(reply_channel) == internal.raw
    assert json.loads(internal.raw)["error"]["code"] == "INTERNAL"


def test_reply_to_receives_a_replay(rpc, reply_channel, marker):
    first = rpc("RPCTEST.count_call", marker, idempotency_key=f"k-{marker}", reply_to="redis:reply:test-session")
    assert next_reply(reply_channel) == first.raw
    rpc("RPCTEST.count_call", marker, idempotency_key=f"k-{marker}", reply_to="redis:reply:test-session")
    assert next_reply(reply_channel) == first.raw


def test_after_a_timeout_reply_to_receives_the_eventual_result_not_the_timeout(rpc, reply_channel, marker):
    result = rpc("RPCTEST.count_call", marker, 0.5, idempotency_key=f"k-{marker}", timeout_ms=100,
                 reply_to="redis:reply:test-session")
    assert result.code == "TIMEOUT"
    eventual = json.loads(next_reply(reply_channel))
    assert eventual["ok"] is True and eventual["data"]["run"] == 1
    assert eventual["trace_id"] == result.body["trace_id"]
    assert runs(marker) == 1


def test_reply_to_outside_the_prefix_is_refused_and_nothing_is_published(rpc, stack):
    subscriber = stack.redis_client().pubsub()
    subscriber.psubscribe("*")
    subscriber.get_message(timeout=5)
    try:
        result = rpc("REGISTRY.ping", reply_to="user:victim")
        assert result.status == 400 and result.code == "INVALID_REQUEST"
        # The response is only sent after any publish, so a publish would already be waiting here.
        assert subscriber.get_message(timeout=1.0) is None
    finally:
        subscriber.close()
