"""``GET /healthz``, ``/readyz`` and ``/version`` answered on the ASGI server's event loop, before Django.

Why: under ASGI each of Django's middlewares hops to a thread and back (rpc/asgi.py says why /rpc skips them too);
measured in issue 21, /healthz through that stack managed ~270 req/s, and every load-balancer probe pays it. These
answers need no session, cookie, CSRF or auth: they are read from the background probes of listeners_project.health,
so a request costs one JSON encoding. Other methods and paths go on to the wrapped application.
"""
from __future__ import annotations

from typing import Any

from core.serialization import dumps
from rpc.asgi import AsgiApp, Receive, Scope, Send

from .health import STATES

_HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]


class HealthEndpoint:
    def __init__(self, fallback: AsgiApp) -> None:
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = STATES.get(scope["path"]) if scope["type"] == "http" and scope["method"] in ("GET", "HEAD") else None
        if state is None:
            await self.fallback(scope, receive, send)
            return
        status, body = state()
        await _respond(send, status, dumps(body), head=scope["method"] == "HEAD")


async def _respond(send: Send, status: int, body: bytes, *, head: bool) -> None:
    headers: list[tuple[bytes, Any]] = [*_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
