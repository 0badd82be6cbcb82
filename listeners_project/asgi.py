"""ASGI entry point: ``POST /rpc`` to the RPC gateway and ``GET /healthz|/readyz|/version`` to the cached health
state, both on the event loop; other HTTP to Django (admin, /debug, /metrics, /rpc/methods, OpenAPI); WebSocket
``/ws`` to the events consumer."""
import gc
import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "listeners_project.settings")
django_asgi_app = get_asgi_application()  # before importing consumers: it sets Django up

from django.conf import settings  # noqa: E402

from listeners_project.processes import start_heartbeat  # noqa: E402
from realtime.routing import WEBSOCKET_CONSUMERS  # noqa: E402
from rpc.asgi import RpcEndpoint  # noqa: E402

from .health import start_probes  # noqa: E402
from .health_asgi import HealthEndpoint  # noqa: E402

http_app = django_asgi_app
if settings.DEBUG:  # the dev stack has no reverse proxy to serve the admin's CSS (production: collectstatic + proxy)
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    http_app = ASGIStaticFilesHandler(django_asgi_app)

http_app = HealthEndpoint(RpcEndpoint(http_app))


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """By scope type, then (WebSocket) by exact path. Not Channels' ProtocolTypeRouter + URLRouter + ``as_asgi()``:
    a socket's coroutine chain lives as long as the socket, and those are three more frames and a copy of the scope
    (about 1 KB per idle connection, bench/ws_heap.py)."""
    if scope["type"] == "http":
        await http_app(scope, receive, send)
    elif scope["type"] == "websocket":
        consumer = WEBSOCKET_CONSUMERS.get(scope["path"])
        if consumer is None:
            await send({"type": "websocket.close"})  # refused before the handshake: the server answers 403
            return
        await consumer()(scope, receive, send)
    else:
        raise ValueError(f"No application configured for scope type {scope['type']!r}")  # as ProtocolTypeRouter


start_probes()  # the first health request then finds a result instead of waiting for one
start_heartbeat()  # this process on the admin's workers page (listeners_project/processes.py)
# The cyclic GC at 10,000 sockets (bench/ws.py, README): full collections were 0.3-0.8 s pauses of the event loop, and
# a fan-out's burst of short-lived objects, caught alive by young collections every 700 allocations, was promoted
# into the old generation and brought the next full one forward. So: Django, the apps and their modules (~300,000
# objects) out of its reach, and young collections every 50,000 allocations (cyclic garbage waits a little longer).
gc.freeze()
gc.set_threshold(50_000, *gc.get_threshold()[1:])
