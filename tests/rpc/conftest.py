"""Fixtures for the RPC gateway tests. Importing methods_for_tests registers the RPCTEST.* namespace."""
from __future__ import annotations

import json
import uuid
from typing import Any, Callable

import pytest
import redis

from tests.conftest import RpcResult

from . import methods_for_tests  # noqa: F401 - registers RPCTEST.*


@pytest.fixture
def valkey(stack) -> redis.Redis:
    return stack.redis_client()


@pytest.fixture
def reply_channel(stack):
    """Subscribed to the reply_to channel the tests name."""
    subscriber = stack.redis_client().pubsub()
    subscriber.subscribe("redis:reply:test-session")
    assert subscriber.get_message(timeout=5)["type"] == "subscribe"
    yield subscriber
    subscriber.close()


@pytest.fixture
def marker() -> str:
    """A fresh execution counter name (RPCTEST methods count their runs under it)."""
    return f"m{uuid.uuid4().hex[:12]}"


@pytest.fixture
def api_client_factory(transactional_db) -> Callable[..., tuple[Any, str]]:
    """API clients are authenticated on a worker thread (its own DB connection): the data must be committed."""
    from rpc.services import api_client_create

    def create(name: str | None = None, namespaces: list[str] | None = None) -> tuple[Any, str]:
        return api_client_create(name=name or f"client-{uuid.uuid4().hex[:8]}", namespaces=namespaces or ["*"])

    return create


def parse(response: Any) -> RpcResult:
    """An RpcResult from an httpx or Django response (live-server tests)."""
    content = response.content
    return RpcResult(status=response.status_code, body=json.loads(content), raw=content,
                     headers={k.lower(): v for k, v in response.headers.items()})
