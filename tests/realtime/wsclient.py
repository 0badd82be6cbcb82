"""A small synchronous WebSocket test client (the `websockets` library) with close-code helpers."""
from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect


def open_ws(address: str, token: str | None = None, header_token: bool = True, **params: Any) -> ClientConnection:
    query = {k: v for k, v in params.items() if v is not None}
    headers = {}
    if token and header_token:
        headers["Authorization"] = f"Bearer {token}"
    elif token:
        query["token"] = token
    return connect(f"ws://{address}/ws?{urlencode(query)}", additional_headers=headers, open_timeout=15,
                   max_queue=None)


def recv_json(ws: ClientConnection, timeout: float = 15.0) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))


def recv_type(ws: ClientConnection, event_type: str, timeout: float = 15.0) -> dict[str, Any]:
    """The next event of ``event_type``, skipping others (an attach may sync first)."""
    event = recv_json(ws, timeout)
    while event.get("type") != event_type:
        event = recv_json(ws, timeout)
    return event


def job_write(uid: str, job_id: str) -> dict[str, Any]:
    """An idempotent RPC body for a real Firestore write whose listener publishes ``notif.job_updated`` to ``uid``."""
    return {"method": "FIREBASE_MANAGEMENT.add_or_update_job_by_job_id", "user_id": uid,
            "idempotency_key": uuid.uuid4().hex,
            "args": [f"clients/{uid}/notifications", {"job_id": job_id, "status": "running"}]}


def recv_events(ws: ClientConnection, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    events = []
    while len(events) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"got {len(events)} of {count} events")
        events.append(json.loads(ws.recv(timeout=remaining)))
    return events


def close_code(ws: ClientConnection, timeout: float = 15.0) -> int | None:
    """Wait for the server to close; return its close code."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ws.recv(timeout=deadline - time.monotonic())
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    except TimeoutError:
        return None
    return None
