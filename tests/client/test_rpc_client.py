"""RpcClient / AsyncRpcClient against a live gateway: envelope, typed errors, idempotency keys, retries."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest
import redis

from devstack.processes import free_port
from gateway_client import (
    AsyncRpcClient, GatewayUnreachable, InvalidArgs, NotFound, PermissionDenied, RetryPolicy, RpcClient, RpcTimeout,
    Unauthenticated, UnknownMethod,
)
from tests.client.conftest import TEST_RETRY
from tests.conftest import wait_until

USER = "user_rpc_client"  # CHROMA_VECTOR acts for the envelope user, whose collections these are (rule 7)
DOCUMENTS = [f"invoice {n} from supplier {n % 7} for {n * 13} EUR, due in {n % 30} days" for n in range(200)]


def idempotency_keys(valkey: redis.Redis) -> list[bytes]:
    return list(valkey.scan_iter("idemp:*"))


@pytest.fixture
def valkey(stack) -> redis.Redis:
    return stack.redis_client()


def document_count(client: RpcClient, collection: str) -> int:
    return client.call("CHROMA_VECTOR.get_collection_info", [collection], user_id=USER)["document_count"]


def test_a_call_returns_the_result_and_the_trace_id_the_gateway_echoed(client):
    reply = client.request("REGISTRY.ping", trace_id="trace-from-the-app")
    assert reply.data == {"pong": True}
    assert reply.trace_id == "trace-from-the-app"
    assert reply.idempotency_key is None and reply.replayed is False and reply.attempts == ()
    assert len(client.request("REGISTRY.ping").trace_id) == 32  # generated per call (uuid4 hex)


def test_a_method_the_gateway_does_not_list_is_refused_before_any_call(client):
    with pytest.raises(UnknownMethod) as caught:
        client.call("REGISTRY.pign")
    assert "REGISTRY.pign" in str(caught.value) and "ping" in str(caught.value)  # the closest listed name
    with pytest.raises(UnknownMethod, match="lists no NOPE"):
        client.call("NOPE.anything")


def test_gateway_errors_arrive_as_typed_exceptions_with_the_trace_id(client, uid):
    with pytest.raises(InvalidArgs) as invalid:
        client.call("REGISTRY.ping", ["unexpected"])
    assert invalid.value.code == "INVALID_ARGS" and invalid.value.trace_id and invalid.value.http_status == 200
    with pytest.raises(PermissionDenied) as denied:
        client.call("REGISTRY.get_user_sessions", [uid], user_id="someone-else")
    assert denied.value.http_status == 403 and denied.value.method == "REGISTRY.get_user_sessions"
    with pytest.raises(NotFound):
        client.call("REGISTRY.heartbeat", ["no-such-session"], user_id=uid)


def test_a_wrong_token_is_unauthenticated_and_not_retried(gateway_url):
    with RpcClient(gateway_url, "not-the-token", retry=TEST_RETRY) as bad:
        started = time.monotonic()
        with pytest.raises(Unauthenticated) as caught:
            bad.call("REGISTRY.ping")
    assert caught.value.http_status == 401 and caught.value.attempts == ()
    assert time.monotonic() - started < 5


def test_writes_carry_a_fresh_key_per_call_so_identical_writes_both_run_and_reads_carry_none(
    client, valkey, collection_name
):
    client.call("CHROMA_VECTOR.create_chroma_instance", [collection_name], user_id=USER)
    first = client.request("CHROMA_VECTOR.add_documents", [collection_name, ["same text"]], user_id=USER)
    second = client.request("CHROMA_VECTOR.add_documents", [collection_name, ["same text"]], user_id=USER)
    assert first.idempotency_key and second.idempotency_key and first.idempotency_key != second.idempotency_key
    assert document_count(client, collection_name) == 2  # two legitimate writes, both ran
    keys_after_writes = len(idempotency_keys(valkey))
    assert keys_after_writes == 3  # create_chroma_instance and both adds
    client.call("REGISTRY.ping")
    client.call("CHROMA_VECTOR.get_collection_info", [collection_name], user_id=USER)
    assert len(idempotency_keys(valkey)) == keys_after_writes  # reads store nothing


def test_a_key_given_by_the_caller_replays_the_first_result(client, collection_name):
    first = client.request("CHROMA_VECTOR.add_documents", [collection_name, ["a", "b"]], idempotency_key="k-1",
                           user_id=USER)
    again = client.request("CHROMA_VECTOR.add_documents", [collection_name, ["a", "b"]], idempotency_key="k-1",
                           user_id=USER)
    assert again.replayed is True and again.data == first.data
    assert document_count(client, collection_name) == 2


def test_a_concurrent_duplicate_gets_409_and_is_retried_until_the_first_run_has_stored_its_result(
    client, valkey, collection_name
):
    client.call("CHROMA_VECTOR.create_chroma_instance", [collection_name], user_id=USER)
    replies = {}

    def add(name: str) -> None:
        replies[name] = client.request("CHROMA_VECTOR.add_documents", [collection_name, DOCUMENTS],
                                       idempotency_key="same-key", timeout_ms=60_000, user_id=USER)

    first = threading.Thread(target=add, args=("first",))
    first.start()
    wait_until(lambda: any(valkey.hget(key, "state") == b"running" for key in idempotency_keys(valkey)),
               message="the first call holds the key")
    second = threading.Thread(target=add, args=("second",))
    second.start()
    first.join(60)
    second.join(60)
    assert replies["second"].attempts and replies["second"].attempts[0].code == "IDEMPOTENCY_CONFLICT"
    assert replies["second"].attempts[0].retry_after_ms is not None
    assert replies["second"].replayed is True and replies["second"].data == replies["first"].data
    assert document_count(client, collection_name) == len(DOCUMENTS)  # ran once


def test_a_timeout_is_retried_with_the_same_key_after_retry_after_ms_and_returns_the_eventual_result(
    client, collection_name
):
    client.call("CHROMA_VECTOR.create_chroma_instance", [collection_name], user_id=USER)
    started = time.monotonic()
    reply = client.request("CHROMA_VECTOR.add_documents", [collection_name, DOCUMENTS], timeout_ms=100, user_id=USER)
    assert reply.attempts[0].code == "TIMEOUT"
    assert reply.attempts[0].waited_s * 1000 == reply.attempts[0].retry_after_ms  # the gateway's delay, honoured
    assert time.monotonic() - started >= reply.attempts[0].waited_s
    assert reply.data["documents_added"] == len(DOCUMENTS) and len(reply.data["ids"]) == len(DOCUMENTS)
    assert document_count(client, collection_name) == len(DOCUMENTS)  # the first run's result, not a second run


def test_when_retries_run_out_the_last_error_is_raised_with_every_earlier_attempt(client, uid):
    with pytest.raises(RpcTimeout) as caught:
        client.call("FIREBASE_MANAGEMENT.get_notifications", [uid], user_id=uid, timeout_ms=1,
                    retry=RetryPolicy(max_attempts=2))
    assert [attempt.code for attempt in caught.value.attempts] == ["TIMEOUT"]
    assert caught.value.retry_after_ms is not None


def test_an_unreachable_gateway_is_retried_with_backoff_then_reported_as_unavailable(service_token):
    policy = RetryPolicy(max_attempts=3, backoff_initial_s=0.01, backoff_max_s=0.05)
    with RpcClient(f"http://127.0.0.1:{free_port()}", service_token, retry=policy) as nowhere:
        with pytest.raises(GatewayUnreachable) as caught:
            nowhere.call("REGISTRY.ping")
    assert caught.value.code == "UNAVAILABLE" and len(caught.value.attempts) == 2


def test_an_argument_json_cannot_carry_fails_before_anything_is_sent(client, valkey):
    with pytest.raises(TypeError):
        client.call("CHROMA_VECTOR.add_documents", ["some_collection", [{"a set"}]])
    assert idempotency_keys(valkey) == []


def test_async_client_calls_maps_errors_and_retries_a_concurrent_duplicate(gateway_url, service_token,
                                                                           collection_name):
    async def scenario() -> None:
        async with AsyncRpcClient(gateway_url, service_token, retry=TEST_RETRY) as aclient:
            assert (await aclient.call("REGISTRY.ping")) == {"pong": True}
            with pytest.raises(InvalidArgs):
                await aclient.call("REGISTRY.ping", ["unexpected"])
            with pytest.raises(UnknownMethod):
                await aclient.call("REGISTRY.nope")
            await aclient.call("CHROMA_VECTOR.create_chroma_instance", [collection_name], user_id=USER)
            replies = await asyncio.gather(*[
                aclient.request("CHROMA_VECTOR.add_documents", [collection_name, DOCUMENTS],
                                idempotency_key="async-key", timeout_ms=60_000, user_id=USER)
                for _ in range(2)
            ])
            assert replies[0].data == replies[1].data
            assert sorted(reply.replayed for reply in replies) == [False, True]
            retried = next(reply for reply in replies if reply.replayed)
            assert retried.attempts[0].code == "IDEMPOTENCY_CONFLICT"
            info = await aclient.call("CHROMA_VECTOR.get_collection_info", [collection_name], user_id=USER)
            assert info["document_count"] == len(DOCUMENTS)

    asyncio.run(scenario())
