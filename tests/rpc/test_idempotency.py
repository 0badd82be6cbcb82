"""Idempotency keys (contract §1, Stripe / IETF semantics) against the real Valkey of the test stack."""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.test import Client

from rpc import execution

from .methods_for_tests import runs

pytestmark = pytest.mark.django_db


def call(token: str, method: str, *args, **envelope):
    """One POST /rpc on a fresh test client (safe from any thread); returns (status, raw, headers)."""
    body = json.dumps({"method": method, "args": list(args), **envelope}).encode()
    response = Client().post("/rpc", data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    return response.status_code, response.content, response


def call_until_settled(token: str, method: str, *args, deadline_s: float = 30.0, **envelope):
    """Retry on 409 after retry_after_ms, as a well-behaved client does; returns the final (status, raw, response)."""
    deadline = time.monotonic() + deadline_s
    conflicts = 0
    while True:
        status, raw, response = call(token, method, *args, **envelope)
        if status != 409:
            return status, raw, response, conflicts
        conflicts += 1
        assert time.monotonic() < deadline, "still 409 after the deadline"
        time.sleep(json.loads(raw)["error"]["retry_after_ms"] / 1000)


def test_twenty_concurrent_identical_calls_run_once_and_all_get_the_same_bytes(service_token, marker):
    start = threading.Barrier(20)

    def one_caller(_: int):
        start.wait()
        return call_until_settled(service_token, "RPCTEST.count_call", marker, 0.5, idempotency_key=f"k-{marker}")

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one_caller, range(20)))

    assert runs(marker) == 1
    assert {status for status, *_ in results} == {200}
    bodies = {raw for _, raw, _, _ in results}
    assert len(bodies) == 1, bodies
    assert json.loads(bodies.pop())["data"]["run"] == 1
    fresh = [response for _, _, response, _ in results if not response.has_header("Idempotent-Replayed")]
    assert len(fresh) == 1  # the caller that ran it; the other 19 got the stored response
    assert sum(conflicts for *_, conflicts in results) >= 1  # duplicates really did overlap the first run


def test_concurrent_identical_async_calls_run_once(service_token, marker):
    start = threading.Barrier(10)

    def one_caller(_: int):
        start.wait()
        return call_until_settled(service_token, "RPCTEST.count_call_async", marker, 0.3,
                                  idempotency_key=f"k-{marker}")

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(one_caller, range(10)))
    assert runs(marker) == 1
    assert len({raw for _, raw, _, _ in results}) == 1


def test_replay_is_byte_identical_with_the_replayed_header(rpc, marker):
    first = rpc("RPCTEST.count_call", marker, idempotency_key=f"k-{marker}", trace_id="first-trace")
    replay = rpc("RPCTEST.count_call", marker, idempotency_key=f"k-{marker}", trace_id="second-trace")
    assert first.status == replay.status == 200
    assert replay.raw == first.raw
    assert replay.body["trace_id"] == "first-trace"
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert runs(marker) == 1


def test_conflict_while_in_flight_is_409_with_retry_after(rpc, service_token, marker):
    worker = threading.Thread(target=call, args=(service_token, "RPCTEST.count_call", marker, 1.0),
                              kwargs={"idempotency_key": f"k-{marker}"})
    worker.start()
    try:
        from tests.conftest import wait_until

        wait_until(lambda: runs(marker) == 1, timeout=15)
        result = rpc("RPCTEST.count_call", marker, 1.0, idempotency_key=f"k-{marker}")
        assert result.status == 409
        assert result.code == "IDEMPOTENCY_CONFLICT"
        assert result.body["error"]["retry_after_ms"] > 0
        assert result.headers["Retry-After"] == "1"
    finally:
        worker.join()
    assert runs(marker) == 1


def test_same_key_with_different_arguments_or_method_is_422(rpc, marker):
    assert rpc("RPCTEST.count_call", marker, idempotency_key=f"k-{marker}").status == 200
    different_args = rpc("RPCTEST.count_call", marker, 0.01, idempotency_key=f"k-{marker}")
    assert different_args.status == 422 and different_args.code == "IDEMPOTENCY_MISMATCH"
    different_method = rpc("RPCTEST.count_call_async", marker, idempotency_key=f"k-{marker}")
    assert different_method.status == 422 and different_method.code == "IDEMPOTENCY_MISMATCH"
    assert runs(marker) == 1


def test_key_order_in_kwargs_does_not_change_the_fingerprint(rpc, marker):
    body_a = json.dumps({"method": "RPCTEST.count_call", "kwargs": {"marker": marker, "sleep_s": 0.0},
                         "idempotency_key": f"k-{marker}"}).encode()
    body_b = json.dumps({"method": "RPCTEST.count_call", "kwargs": {"sleep_s": 0.0, "marker": marker},
                         "idempotency_key": f"k-{marker}"}).encode()
    first, second = rpc("x", raw_body=body_a), rpc("x", raw_body=body_b)
    assert second.raw == first.raw and second.headers.get("Idempotent-Replayed") == "true"


def test_retry_after_unavailable_runs_again(rpc, marker):
    first = rpc("RPCTEST.unavailable_first", marker, idempotency_key=f"k-{marker}")
    assert first.code == "UNAVAILABLE"
    second = rpc("RPCTEST.unavailable_first", marker, idempotency_key=f"k-{marker}")
    assert second.data == {"run": 2}
    assert "Idempotent-Replayed" not in second.headers
    assert rpc("RPCTEST.unavailable_first", marker, idempotency_key=f"k-{marker}").raw == second.raw
    assert runs(marker) == 2


def test_retry_after_internal_runs_again(rpc, marker):
    assert rpc("RPCTEST.internal_first", marker, idempotency_key=f"k-{marker}").code == "INTERNAL"
    assert rpc("RPCTEST.internal_first", marker, idempotency_key=f"k-{marker}").data == {"run": 2}


def test_non_retryable_error_is_stored_and_replayed(rpc, marker):
    first = rpc("RPCTEST.not_found", marker, idempotency_key=f"k-{marker}")
    replay = rpc("RPCTEST.not_found", marker, idempotency_key=f"k-{marker}")
    assert first.code == "NOT_FOUND"
    assert replay.raw == first.raw and replay.headers.get("Idempotent-Replayed") == "true"
    assert runs(marker) == 1


def test_rejected_calls_do_not_consume_the_key(rpc, marker):
    assert rpc("RPCTEST.count_call", marker, "not-a-number", idempotency_key=f"k-{marker}").code == "INVALID_ARGS"
    assert rpc("RPCTEST.count_call", marker, idempotency_key=f"k-{marker}").data["run"] == 1


def test_timed_out_call_retried_with_the_same_key_returns_the_eventual_result_without_running_again(
    rpc, service_token, marker
):
    first = rpc("RPCTEST.count_call", marker, 1.0, idempotency_key=f"k-{marker}", timeout_ms=150)
    assert first.code == "TIMEOUT"
    status, raw, response, _ = call_until_settled(service_token, "RPCTEST.count_call", marker, 1.0,
                                                  idempotency_key=f"k-{marker}", timeout_ms=150)
    assert status == 200
    assert json.loads(raw)["data"]["run"] == 1
    assert response["Idempotent-Replayed"] == "true"
    assert runs(marker) == 1


def test_timed_out_async_call_settles_later_too(rpc, service_token, marker):
    assert rpc("RPCTEST.count_call_async", marker, 0.6, idempotency_key=f"k-{marker}", timeout_ms=100).code == "TIMEOUT"
    status, raw, _, _ = call_until_settled(service_token, "RPCTEST.count_call_async", marker, 0.6,
                                           idempotency_key=f"k-{marker}", timeout_ms=100)
    assert json.loads(raw)["data"] == {"marker": marker, "run": 1}
    assert runs(marker) == 1


def test_call_still_queued_at_its_deadline_never_runs_and_releases_its_key(rpc, service_token, marker, monkeypatch):
    """With every worker thread busy, a call whose deadline passes in the queue is abandoned, not run late."""
    from tests.conftest import wait_until

    single_worker = execution.WorkerThreads(max_workers=1, name="rpc-test")
    monkeypatch.setattr(execution, "_workers", single_worker)
    blocker = f"{marker}-blocker"
    occupying = threading.Thread(target=call, args=(service_token, "RPCTEST.count_call", blocker, 1.0),
                                 kwargs={"idempotency_key": f"k-{blocker}"})
    occupying.start()
    try:
        wait_until(lambda: runs(blocker) == 1, timeout=15)
        queued = rpc("RPCTEST.count_call", marker, idempotency_key=f"k-{marker}", timeout_ms=100)
        assert queued.code == "TIMEOUT"
        # The key was released at once: the retry is not a 409, it runs (once the worker is free).
        retry = rpc("RPCTEST.count_call", marker, idempotency_key=f"k-{marker}", timeout_ms=10_000)
        assert retry.data["run"] == 1
    finally:
        occupying.join()
    # The retry ran after the abandoned item on the single thread, so that item has been dequeued and skipped.
    assert runs(marker) == 1


def test_reads_ignore_the_key_and_store_nothing(rpc, valkey):
    first = rpc("RPCTEST.echo", "a", idempotency_key="read-key")
    second = rpc("RPCTEST.echo", "a", idempotency_key="read-key")
    assert first.data == second.data == {"value": "a"}
    assert "Idempotent-Replayed" not in second.headers
    assert list(valkey.scan_iter("idemp:*")) == []


def test_the_same_key_of_two_users_are_two_calls(rpc, marker):
    first = rpc("RPCTEST.count_call", marker, idempotency_key=f"k-{marker}", user_id="alice")
    second = rpc("RPCTEST.count_call", marker, idempotency_key=f"k-{marker}", user_id="bob")
    assert (first.data["run"], second.data["run"]) == (1, 2)
    assert "Idempotent-Replayed" not in second.headers
    assert rpc("RPCTEST.count_call", marker, idempotency_key=f"k-{marker}", user_id="bob").headers.get(
        "Idempotent-Replayed") == "true"


@pytest.mark.parametrize("opt_out", [{"RPC_IDEMP_DISABLE": True},
                                     {"RPC_IDEMP_DISABLE_METHODS": frozenset({"RPCTEST.count_call"})}])
def test_the_originals_opt_outs_run_every_call(rpc, marker, settings, opt_out):
    for name, value in opt_out.items():
        setattr(settings, name, value)
    assert rpc("RPCTEST.count_call", marker, idempotency_key=f"k-{marker}").data["run"] == 1
    assert rpc("RPCTEST.count_call", marker, idempotency_key=f"k-{marker}").data["run"] == 2
    assert rpc("RPCTEST.count_call", marker).data["run"] == 3  # no key needed either


def test_stored_response_expires_after_rpc_idemp_ttl(rpc, valkey, marker):
    rpc("RPCTEST.count_call", marker, idempotency_key=f"k-{marker}")
    (key,) = valkey.keys("idemp:*")
    assert 800 < valkey.ttl(key) <= 900  # RPC_IDEMP_TTL defaults to the original service's 900 s
    assert valkey.hget(key, "state") == b"done"
