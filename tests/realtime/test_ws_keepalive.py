"""The uvicorn WebSocket protocol (listeners_project/ws_protocol.py): dead peers are found by keepalive pings."""
from __future__ import annotations

import base64
import os
import socket
import time

import pytest

from realtime import presence
from tests.conftest import start_gateway, wait_until
from tests.realtime.wsclient import open_ws, recv_json

PING_INTERVAL_S = 1.0
PING_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def fast_keepalive_gateway(stack):
    options = ["--ws-ping-interval", str(PING_INTERVAL_S), "--ws-ping-timeout", str(PING_TIMEOUT_S)]
    process, address = start_gateway(stack, name="asgi-keepalive", server_options=options)
    yield address
    process.stop()


def silent_peer(address: str, uid: str, token: str) -> socket.socket:
    """A client that completes the WebSocket handshake and then never reads or answers anything (a vanished peer)."""
    host, port = address.split(":")
    sock = socket.create_connection((host, int(port)), timeout=15)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws?uid={uid}&token={token} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(4096)
    assert response.startswith(b"HTTP/1.1 101"), response[:100]
    return sock


def test_a_peer_that_stops_answering_is_dropped_and_goes_offline(fast_keepalive_gateway, service_token):
    sock = silent_peer(fast_keepalive_gateway, "ka-silent", service_token)
    try:
        wait_until(lambda: presence.is_online("ka-silent"), timeout=15)
        went_online = time.monotonic()
        # Dropped after interval + timeout of silence (plus one sweep period); generous for a shared machine.
        wait_until(lambda: not presence.is_online("ka-silent"), timeout=30, interval=0.05)
        assert time.monotonic() - went_online >= PING_INTERVAL_S
    finally:
        sock.close()


def test_a_peer_that_answers_pings_stays_connected_and_receives_events(fast_keepalive_gateway, service_token):
    from realtime.publisher import publish_event
    from tests.realtime.test_ws_delivery import wait_for_subscription

    with open_ws(fast_keepalive_gateway, service_token, uid="ka-alive") as ws:  # websockets answers pings itself
        wait_for_subscription("user:ka-alive")
        deadline = time.monotonic() + 4 * (PING_INTERVAL_S + PING_TIMEOUT_S)
        while time.monotonic() < deadline:  # idle well past several keepalive periods, reading what arrives
            try:
                ws.recv(timeout=0.5)
            except TimeoutError:
                pass
        assert presence.is_online("ka-alive")
        publish_event("ka-alive", "notif.sync", {"still": "here"})
        assert recv_json(ws)["payload"] == {"still": "here"}


def test_the_keepalive_ping_rtt_is_measured(fast_keepalive_gateway, service_token):
    import re
    import urllib.request

    def rtt_count() -> float:
        with urllib.request.urlopen(f"http://{fast_keepalive_gateway}/metrics", timeout=30) as response:  # noqa: S310
            match = re.search(r"^gateway_ws_ping_rtt_seconds_count (\S+)$", response.read().decode(), re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    before = rtt_count()
    with open_ws(fast_keepalive_gateway, service_token, uid="ka-rtt") as ws:  # websockets answers pings itself

        def pinged_and_answered() -> bool:
            try:
                ws.recv(timeout=0.2)  # let the client library read (and answer) the server's pings
            except TimeoutError:
                pass
            return rtt_count() > before

        wait_until(pinged_and_answered, timeout=30, interval=0)
