"""``POST /rpc`` served straight from the ASGI server's event loop; every other request goes to Django.

Why not a Django view: under ASGI, each of Django's built-in middlewares (sessions, CSRF, auth, messages...) is a
sync ``MiddlewareMixin`` that hops to a thread and back twice per request, and a sync view hops once more. Measured on
this machine (bench/rpc.py) the no-op RPC managed ~300 req/s with a 90 ms median at 32 clients through that stack.
/rpc needs none of it: it authenticates its own bearer, has no session, no cookies and no forms, so it is answered
here, on the loop, with one thread hop for a sync method's body. The DRF view in rpc.views serves the same gateway
for Django's test client and documents the endpoint in the OpenAPI schema.
"""
from __future__ import annotations

import math
from typing import Any, Awaitable, Callable

from . import gateway
from core.errors import PayloadTooLarge

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

RPC_PATH = "/rpc"
_BASE_HEADERS = [
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
]


class RpcEndpoint:
    """Wraps the Django ASGI application: ``RpcEndpoint(django_asgi_app)``."""

    def __init__(self, fallback: AsgiApp) -> None:
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == RPC_PATH:
            await self._rpc(scope, receive, send)
        else:
            await self.fallback(scope, receive, send)

    async def _rpc(self, scope: Scope, receive: Receive, send: Send) -> None:
        authorization = trace_header = traceparent = content_length = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"x-trace-id":
                trace_header = value.decode("latin-1")
            elif name == b"traceparent":
                traceparent = value.decode("latin-1")
            elif name == b"content-length":
                content_length = value

        async def read_body(limit: int) -> bytes:
            if content_length is not None and content_length.isdigit() and int(content_length) > limit:
                raise PayloadTooLarge()
            chunks: list[bytes] = []
            size = 0
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    break
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:  # chunked uploads have no Content-Length: stop reading at the limit
                    raise PayloadTooLarge()
                chunks.append(chunk)
                more = message.get("more_body", False)
            return b"".join(chunks)

        reply = await gateway.handle(
            authorization=authorization, read_body=read_body,
            trace_id=gateway.trace_id_from_header(trace_header, traceparent),
        )
        headers = [*_BASE_HEADERS, (b"content-length", str(len(reply.body)).encode())]
        if reply.replayed:
            headers.append((b"idempotent-replayed", b"true"))
        if reply.retry_after_ms is not None:
            headers.append((b"retry-after", str(math.ceil(reply.retry_after_ms / 1000)).encode()))
        if reply.status == 413:  # the rest of the body was never read: don't reuse this connection
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})
