"""A keyed write that is one script on the user's slot (REGISTRY.unregister_session, rpc/idempotency.py keyed_script)
keeps the contract's idempotency: byte-identical replay, 422 for another call with the same key, scope per API client
and acting user, and a record either path can read."""
from __future__ import annotations

import json

import pytest
import redis

from core import keys
from registry import services, store

from .methods_for_tests import runs
from .test_results_and_reply_to import next_reply

pytestmark = pytest.mark.django_db(transaction=True)


def unregister(rpc, session_id: str, key: str, user_id: str = "u1", **envelope):
    return rpc("REGISTRY.unregister_session", session_id, user_id=user_id, idempotency_key=key, **envelope)


def test_a_replay_returns_the_stored_bytes_and_does_not_run_again(rpc):
    services.register_session(user_id="u1", session_id="s1")
    first = unregister(rpc, "s1", "logout-1")
    assert first.data is True and "Idempotent-Replayed" not in first.headers
    services.register_session(user_id="u1", session_id="s1")  # a new login with the same id
    replay = unregister(rpc, "s1", "logout-1")
    assert replay.raw == first.raw and replay.headers.get("Idempotent-Replayed") == "true"
    assert [s.session_id for s in store.user_sessions("u1")] == ["s1"]  # the replay closed nothing
    assert unregister(rpc, "s1", "logout-2").data is True
    unknown = unregister(rpc, "s1", "logout-3")
    assert unknown.data is False and unregister(rpc, "s1", "logout-3").raw == unknown.raw


def test_the_same_key_for_another_session_or_method_is_422(rpc, marker):
    services.register_session(user_id="u1", session_id="s1")
    assert unregister(rpc, "s1", "k").data is True
    other = unregister(rpc, "s2", "k")
    assert (other.status, other.code) == (422, "IDEMPOTENCY_MISMATCH")
    # A key first used through the claim/settle path, then for the one-script write, and the other way round.
    assert rpc("RPCTEST.count_call", marker, user_id="u1", idempotency_key="shared").data["run"] == 1
    assert unregister(rpc, "s1", "shared").code == "IDEMPOTENCY_MISMATCH"
    assert rpc("RPCTEST.count_call", marker, user_id="u1", idempotency_key="k").code == "IDEMPOTENCY_MISMATCH"
    assert runs(marker) == 1


def test_the_key_is_scoped_per_api_client_and_acting_user(rpc, api_client_factory):
    for uid in ("u1", "u2"):
        services.register_session(user_id=uid, session_id="s1")
        services.register_session(user_id=uid, session_id="s2")
    _, token = api_client_factory(namespaces=["REGISTRY"])
    assert unregister(rpc, "s1", "k").data is True
    by_client = unregister(rpc, "s1", "k", token=token)
    assert by_client.data is False and "Idempotent-Replayed" not in by_client.headers  # ran: s1 was already closed
    by_user = unregister(rpc, "s1", "k", user_id="u2")
    assert by_user.data is True and "Idempotent-Replayed" not in by_user.headers
    assert {s.session_id for s in store.user_sessions("u2")} == {"s2"}


def test_the_record_lives_in_the_users_slot_and_expires_after_rpc_idemp_ttl(rpc, valkey):
    services.register_session(user_id="u1", session_id="s1")
    unregister(rpc, "s1", "k")
    (record,) = valkey.keys("idemp:*")
    assert record.decode().startswith(f"idemp:{keys.user_tag('u1')}:svc:u1:")
    assert valkey.hget(record, "state") == b"done" and 800 < valkey.ttl(record) <= 900


def test_reply_to_gets_the_response_and_its_replay_and_without_a_user_the_call_still_answers(rpc, reply_channel):
    services.register_session(user_id="u1", session_id="s1")
    result = unregister(rpc, "s1", "k", reply_to="redis:reply:test-session")
    assert result.data is True and next_reply(reply_channel) == result.raw
    unregister(rpc, "s1", "k", reply_to="redis:reply:test-session")
    assert next_reply(reply_channel) == result.raw
    assert rpc("REGISTRY.unregister_session", "s1", idempotency_key="no-user").data is False


def test_past_its_deadline_the_script_still_completes_for_reply_to_and_the_retry(rpc, stack, reply_channel):
    services.register_session(user_id="u1", session_id="s1")
    ports = list(stack.redis_cluster.ports) if stack.redis_cluster is not None else [stack.redis_port]
    for port in ports:  # scripts that write wait until the pause ends: the call outlives its 200 ms deadline
        redis.Redis(port=port).execute_command("CLIENT", "PAUSE", 1500, "WRITE")
    timed_out = unregister(rpc, "s1", "late", timeout_ms=200, reply_to="redis:reply:test-session")
    assert timed_out.code == "TIMEOUT"
    eventual = next_reply(reply_channel)
    assert json.loads(eventual)["data"] is True and json.loads(eventual)["trace_id"] == timed_out.body["trace_id"]
    retry = unregister(rpc, "s1", "late")
    assert retry.raw == eventual and retry.headers.get("Idempotent-Replayed") == "true"
    assert store.user_sessions("u1") == []
