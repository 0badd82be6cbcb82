"""The production path: rpc.asgi.RpcEndpoint answering POST /rpc inside real uvicorn and daphne processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import httpx
import pytest

from devstack.processes import ManagedProcess, free_port, http_ok
from tests.conftest import BASE_DIR, migrate, wait_until

from .conftest import parse
from .methods_for_tests import runs

APP = "tests.rpc.asgi_with_test_methods:application"


def server_argv(server: str, port: int) -> list[str]:
    if server == "daphne":
        return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), APP]
    return [sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
            "--lifespan", "off"]


@pytest.fixture(scope="module", params=["uvicorn", "daphne"])
def live(request, stack) -> Iterator[str]:
    env = {**os.environ, **stack.env}
    migrate(env)
    port = free_port()
    process = ManagedProcess(f"rpc-live-{request.param}-{port}", server_argv(request.param, port),
                             ready=lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), run_dir=stack.run_dir,
                             env=env, cwd=BASE_DIR).start()
    yield f"http://127.0.0.1:{port}"
    process.stop()


def post(base: str, token: str | None, body: dict | bytes, **kwargs) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{base}/rpc", content=content, headers=headers, timeout=30, **kwargs)


def test_ping_and_headers(live, service_token):
    response = post(live, service_token, {"method": "REGISTRY.ping"}, headers={"X-Trace-Id": "live-trace"})
    assert response.status_code == 200
    assert response.json() == {"ok": True, "data": {"pong": True}, "trace_id": "live-trace"}
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"


def test_unauthenticated_is_401(live):
    result = parse(post(live, "wrong", {"method": "REGISTRY.ping"}))
    assert result.status == 401 and result.code == "UNAUTHENTICATED"


def test_body_limit_with_and_without_content_length(live, service_token):
    big = json.dumps({"method": "RPCTEST.echo", "args": ["x" * (1024 * 1024)]}).encode()
    assert parse(post(live, service_token, big)).status == 413

    def chunked():  # no Content-Length: the endpoint must stop reading at the limit by itself
        for start in range(0, len(big), 65536):
            yield big[start:start + 65536]

    response = httpx.post(f"{live}/rpc", content=chunked(), timeout=30,
                          headers={"Authorization": f"Bearer {service_token}", "Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "INVALID_REQUEST"


def test_other_paths_and_methods_still_go_to_django(live):
    assert httpx.get(f"{live}/healthz", timeout=30).status_code in (200, 503)
    assert httpx.get(f"{live}/rpc", timeout=30).status_code == 405
    assert httpx.get(f"{live}/rpc/methods", timeout=30).status_code == 401


def test_twenty_concurrent_identical_calls_run_once(live, service_token, marker):
    body = {"method": "RPCTEST.count_call", "args": [marker, 0.5], "idempotency_key": f"k-{marker}"}
    start = threading.Barrier(20)

    def one_caller(_: int) -> httpx.Response:
        start.wait()
        while True:
            response = post(live, service_token, body)
            if response.status_code != 409:
                return response
            time.sleep(response.json()["error"]["retry_after_ms"] / 1000)  # the protocol's own back-off

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(one_caller, range(20)))
    assert runs(marker) == 1
    assert len({r.content for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 19


def test_timeout_then_retry_gets_the_eventual_result(live, service_token, marker):
    body = {"method": "RPCTEST.count_call", "args": [marker, 0.8], "idempotency_key": f"k-{marker}", "timeout_ms": 100}
    assert parse(post(live, service_token, body)).code == "TIMEOUT"
    settled = wait_until(lambda: (r := post(live, service_token, body)).status_code == 200 and r, timeout=20)
    assert settled.json()["data"]["run"] == 1 and settled.headers["idempotent-replayed"] == "true"
    assert runs(marker) == 1


def test_api_client_created_by_the_command_calls_the_live_server(live, stack):
    created = subprocess.run(
        [sys.executable, "manage.py", "create_api_client", f"live-{free_port()}", "--namespaces", "REGISTRY", "--json"],
        cwd=BASE_DIR, env={**os.environ, **stack.env}, capture_output=True, text=True, check=True, timeout=60,
    )
    token = json.loads(created.stdout)["token"]
    assert post(live, token, {"method": "REGISTRY.ping"}).json()["data"] == {"pong": True}
    denied = parse(post(live, token, {"method": "RPCTEST.echo", "args": [1]}))
    assert denied.status == 403 and denied.code == "PERMISSION_DENIED"


def test_reply_to_over_the_live_server(live, service_token, valkey):
    subscriber = valkey.pubsub()
    subscriber.subscribe("redis:reply:live")
    subscriber.get_message(timeout=5)
    try:
        response = post(live, service_token, {"method": "REGISTRY.ping", "reply_to": "redis:reply:live"})
        message = wait_until(lambda: (m := subscriber.get_message(timeout=0.5)) and m["type"] == "message" and m,
                             timeout=10)
        assert message["data"] == response.content
    finally:
        subscriber.close()
