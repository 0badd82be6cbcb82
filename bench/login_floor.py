"""The floor for the login-path rows of bench/registry.py: a bare ASGI app doing the same Redis work as the gateway.

``POST /rpc`` parses the envelope and runs the very script the gateway runs for ``REGISTRY.register_user``,
``heartbeat`` or ``unregister_session`` (registry.store), and answers the same JSON shape; ``GET /healthz`` answers
a fixed body. No auth, no envelope validation, no idempotency, no metrics: what is left is the server, the JSON and
the Redis round trip, so gateway / floor is the price of everything the gateway adds.

    uvicorn --factory bench.login_floor:floor_app
"""
from __future__ import annotations

from typing import Any

import orjson


def floor_app() -> Any:
    import django

    django.setup()  # registry.store reads the TTLs from settings (the environment is the gateway's)
    from registry import store

    async def handle(envelope: dict[str, Any]) -> Any:
        method, args, uid = envelope["method"], envelope.get("args", []), envelope.get("user_id")
        if method == "REGISTRY.register_user":
            call = store.register_call(args[0], args[1], None, None)
            await store.REGISTER.acall(*call)
            return {"user_id": args[0], "session_id": args[1], "backend_route": None,
                    "last_seen_at": store.from_ms(call[1][4])}
        if method == "REGISTRY.heartbeat":
            call = store.heartbeat_call(uid, args[0])
            await store.HEARTBEAT.acall(*call)
            return {"session_id": args[0], "user_id": uid, "last_seen_at": store.from_ms(call[1][4]),
                    "expires_at": store.from_ms(call[1][5])}
        return await store.END.acall(*store.end_call(uid, args[0], store.CLOSED)) >= 0

    health = orjson.dumps({"status": "ok", "version": "floor"})

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "POST":
            body, more = b"", True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
            payload = orjson.dumps({"ok": True, "data": await handle(orjson.loads(body)), "trace_id": "floor"})
        else:
            payload = health
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    return app
