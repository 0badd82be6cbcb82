"""The client package is tested from its source folder (client/), against live gateway processes: no mocks.

``client/`` is put on sys.path here so the one test command runs these tests with nothing installed.
"""
from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Iterator

import pytest

CLIENT_SOURCE = Path(__file__).resolve().parents[2] / "client"
if str(CLIENT_SOURCE) not in sys.path:
    sys.path.insert(0, str(CLIENT_SOURCE))

import gateway_client  # noqa: E402 - needs the path above
from gateway_client import RetryPolicy, RpcClient  # noqa: E402

# Retries in tests: the gateway's retry_after_ms is honoured as in production, backoff for an unreachable gateway
# is short so a failing test fails fast.
TEST_RETRY = RetryPolicy(max_attempts=8, max_elapsed_s=30.0, backoff_initial_s=0.05, backoff_max_s=0.5)


@pytest.fixture
def gateway_url(live_gateway: str) -> str:
    return f"http://{live_gateway}"


@pytest.fixture
def client(gateway_url: str, service_token: str) -> Iterator[RpcClient]:
    with RpcClient(gateway_url, service_token, retry=TEST_RETRY) as rpc_client:
        yield rpc_client


@pytest.fixture
def uid() -> str:
    return f"user-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def collection_name() -> str:
    return f"klk_space_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def restore_client_defaults() -> Iterator[None]:
    """Tests that call gateway_client.configure() leave the process defaults as they found them."""
    yield
    gateway_client.configure()
