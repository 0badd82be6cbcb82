"""The gateway's WebSocket protocol applies uvicorn's proxy headers itself (listeners_project/ws_protocol.py, to keep no
middleware frame per socket): the client address the trusted-network check sees must be the one uvicorn's
ProxyHeadersMiddleware would give (X-Forwarded-For from a trusted proxy, here 127.0.0.1, uvicorn's default)."""
from __future__ import annotations

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from realtime.auth import CLOSE_UNAUTHENTICATED
from tests.conftest import start_gateway
from tests.realtime.wsclient import recv_json

TRUSTED_NETWORK = "10.9.8.0/24"


@pytest.fixture(scope="module")
def trusting_gateway(stack):
    process, address = start_gateway(stack, name="asgi-proxy-headers",
                                     extra_env={"LISTENERS_WS_TRUSTED_NETWORKS": TRUSTED_NETWORK})
    yield address
    process.stop()


def tokenless(address: str, uid: str, forwarded_for: str | None):
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return connect(f"ws://{address}/ws?uid={uid}", additional_headers=headers, open_timeout=15)


def test_a_client_forwarded_from_a_trusted_network_opens_without_a_token(trusting_gateway):
    with tokenless(trusting_gateway, "proxied1", "10.9.8.7") as ws:
        ws.send('{"type":"ping"}')
        assert recv_json(ws)["type"] == "pong"


@pytest.mark.parametrize("forwarded_for", ["192.0.2.1", None])
def test_a_client_from_elsewhere_is_refused(trusting_gateway, forwarded_for):
    with tokenless(trusting_gateway, "proxied2", forwarded_for) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=15)
    assert closed.value.rcvd.code == CLOSE_UNAUTHENTICATED


def test_an_unknown_websocket_path_is_refused_at_the_handshake(trusting_gateway):
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://{trusting_gateway}/nowhere", open_timeout=15)
    assert refused.value.response.status_code == 403
