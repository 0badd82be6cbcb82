"""Chroma fixtures: both client modes, a clean collection set per test, and a guard against any outbound connection.

``chroma_mode`` runs a test twice: against the embedded PersistentClient at the stack's CHROMA_PATH, and against a
real ``chroma run`` server (started once per session) by pointing settings CHROMA_HOST/PORT at it and resetting the
adapter's client, which is exactly how production switches modes.
"""
from __future__ import annotations

import ipaddress
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from chroma import store
from devstack import services
from devstack.processes import ManagedProcess, free_port
from core.integrations import chroma as chroma_adapter

LOOPBACK_NAMES = {"localhost", "testserver"}


class OutboundConnectionAttempt(OSError):
    """Raised in place of a connection to anything but loopback."""


@dataclass
class NetworkGuard:
    attempts: list[str] = field(default_factory=list)

    def check_host(self, host: Any) -> None:
        if host is None:
            return
        text = host.decode() if isinstance(host, bytes) else str(host)
        if text in LOOPBACK_NAMES:
            return
        try:
            if ipaddress.ip_address(text.split("%")[0]).is_loopback:
                return
        except ValueError:
            pass  # a hostname other than localhost: resolving it is already an attempt to reach out
        self.attempts.append(text)
        raise OutboundConnectionAttempt(f"outbound connection to {text} attempted during a chroma test")

    def check_address(self, family: int, address: Any) -> None:
        if family in (socket.AF_INET, socket.AF_INET6):
            self.check_host(address[0])


@pytest.fixture(autouse=True)
def no_outbound_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[NetworkGuard]:
    """Fail any chroma test that resolves or connects to a non-loopback address (e.g. a model download)."""
    guard = NetworkGuard()
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def connect(sock: socket.socket, address: Any) -> Any:
        guard.check_address(sock.family, address)
        return real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> Any:
        guard.check_address(sock.family, address)
        return real_connect_ex(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        guard.check_host(host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield guard
    assert guard.attempts == [], f"outbound connections attempted: {guard.attempts}"


@dataclass
class ChromaServer:
    port: int
    process: ManagedProcess


@pytest.fixture(scope="session")
def chroma_server(stack) -> Iterator[ChromaServer]:
    port = free_port()
    process = services.chroma_server(port, stack.run_dir / "chroma-server", stack.run_dir).start()
    yield ChromaServer(port=port, process=process)
    process.stop()


def _reset_chroma_client() -> None:
    chroma_adapter.reset_clients()
    store.forget_cached_collections()


def _delete_all_collections() -> None:
    client = chroma_adapter.get_chroma()
    for collection in client.list_collections():
        client.delete_collection(collection.name)


@pytest.fixture(params=["embedded", "server"])
def chroma_mode(request: pytest.FixtureRequest, settings) -> Iterator[str]:
    """The test runs once per client mode, each time on an empty Chroma."""
    if request.param == "server":
        server: ChromaServer = request.getfixturevalue("chroma_server")
        if not server.process.alive():  # a test stopped it and failed before restarting it
            server.process.start()
        settings.CHROMA_HOST = "127.0.0.1"
        settings.CHROMA_PORT = server.port
    _reset_chroma_client()
    _delete_all_collections()
    yield request.param
    _reset_chroma_client()  # pytest-django restores the settings after this; the next client is built from them


@pytest.fixture
def call(rpc):
    """``call("add_documents", coll, docs, user_id="u1")``: CHROMA_VECTOR.* with a fresh idempotency key."""

    def invoke(method: str, *args: Any, user_id: str = "user-1", **envelope: Any):
        envelope.setdefault("idempotency_key", uuid.uuid4().hex)
        return rpc(f"CHROMA_VECTOR.{method}", *args, user_id=user_id, **envelope)

    return invoke


@pytest.fixture
def collection_name() -> str:
    return f"klk_space_{uuid.uuid4().hex[:10]}"
