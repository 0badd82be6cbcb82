"""Shared fixtures: the real services (started by the root conftest), an RPC caller, live ASGI servers."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from django.test import Client

from devstack import services
from devstack.processes import ManagedProcess, free_port
from devstack.pytest_plugin import get_stack
from devstack.stack_for_tests import ServiceStack

BASE_DIR = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def stack() -> ServiceStack:
    return get_stack()


@pytest.fixture(autouse=True)
def clean_backends(stack: ServiceStack) -> None:
    """Every test starts from empty Redis, Firestore and Realtime DB. This process's buffered activity counts and
    trace records are written first (a flush waits for the flusher thread's), so none lands after the wipe."""
    from core import activity, provenance

    activity.flush()
    provenance.flush()
    stack.wipe()


@pytest.fixture(scope="session")
def service_token(stack: ServiceStack) -> str:
    return stack.service_token


@dataclass
class RpcResult:
    status: int
    body: dict[str, Any]
    raw: bytes
    headers: dict[str, str]

    @property
    def data(self) -> Any:
        assert self.body["ok"] is True, self.body
        return self.body["data"]

    @property
    def code(self) -> str | None:
        return None if self.body.get("ok") else self.body["error"]["code"]


RpcCaller = Callable[..., RpcResult]


@pytest.fixture
def rpc(service_token: str) -> RpcCaller:
    """Call /rpc in-process through Django's test client: ``rpc("REGISTRY.ping")``."""
    client = Client()

    def call(method: str, *args: Any, token: str | None = service_token, raw_body: bytes | None = None,
             **envelope: Any) -> RpcResult:
        body = raw_body if raw_body is not None else json.dumps({"method": method, "args": list(args), **envelope}).encode()
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
        response = client.post("/rpc", data=body, content_type="application/json", **headers)
        return RpcResult(
            status=response.status_code, body=json.loads(response.content), raw=response.content,
            headers={k: v for k, v in response.items()},
        )

    return call


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.02, message: str = "") -> Any:
    """Poll a condition with a generous deadline (the machine is shared); return its first truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s {message}")
        time.sleep(interval)


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), "migrate", "--noinput"], env={**env}, cwd=BASE_DIR, check=True,
        capture_output=True,
    )


def start_gateway(stack: ServiceStack, server: str = "uvicorn", extra_env: dict[str, str] | None = None,
                  name: str | None = None, server_options: list[str] | None = None) -> tuple[ManagedProcess, str]:
    import os

    env = {**os.environ, **stack.env, **(extra_env or {})}
    migrate(env)
    port = free_port()
    process = services.asgi_server(port, stack.run_dir, env, server=server, name=name or f"asgi-{server}-{port}",
                                   server_options=server_options)
    return process.start(), f"127.0.0.1:{port}"


@pytest.fixture(scope="session")
def live_gateway(stack: ServiceStack) -> Iterator[str]:
    """A real uvicorn process serving the gateway; yields ``host:port``."""
    process, address = start_gateway(stack)
    yield address
    process.stop()
