"""ASGI entry point: ``POST /rpc`` to the RPC gateway and ``GET /healthz|/readyz|/version`` to the cached health
state, both on the event loop; other HTTP to Django (admin, /debug, /metrics, /rpc/methods, OpenAPI); WebSocket
``/ws`` to the events consumer."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "listeners_project.settings")
django_asgi_app = get_asgi_application()  # before importing consumers: it sets Django up

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from listeners_project.processes import start_heartbeat  # noqa: E402
from realtime.routing import websocket_urlpatterns  # noqa: E402
from rpc.asgi import RpcEndpoint  # noqa: E402

from .health import start_probes  # noqa: E402
from .health_asgi import HealthEndpoint  # noqa: E402

http_app = django_asgi_app
if settings.DEBUG:  # the dev stack has no reverse proxy to serve the admin's CSS (production: collectstatic + proxy)
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    http_app = ASGIStaticFilesHandler(django_asgi_app)

start_probes()  # the first health request then finds a result instead of waiting for one
application = ProtocolTypeRouter(
    {"http": HealthEndpoint(RpcEndpoint(http_app)), "websocket": URLRouter(websocket_urlpatterns)}
)
start_heartbeat()  # this process on the admin's workers page (listeners_project/processes.py)
