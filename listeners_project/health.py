"""Health endpoints (contract §4). Truthful: ``degraded`` + 503 when Redis or Firestore can't be reached."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from core import metrics as gateway_metrics
from core.errors import RpcError
from core.integrations import chroma as chroma_adapter
from core.integrations import firebase as firebase_adapter
from core.integrations import redis as redis_adapter
from core.integrations import rtdb as rtdb_adapter
from rpc.auth import authenticate, bearer_token
from workflows.selectors import listener_counts, workflow_listener_status

STARTED_AT = time.monotonic()
_PROBE_CACHE_S = 1.0  # /healthz may be polled often; one real probe per second per process is plenty


class _CachedProbe:
    def __init__(self, probe: Callable[[], bool]) -> None:
        self._probe = probe
        self._lock = threading.Lock()
        self._value = False
        self._at = -1e9

    def __call__(self) -> bool:
        with self._lock:
            if time.monotonic() - self._at > _PROBE_CACHE_S:
                self._value = self._probe()
                self._at = time.monotonic()
            return self._value


redis_ok = _CachedProbe(redis_adapter.ping)
firestore_ok = _CachedProbe(firebase_adapter.ping)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    redis_up, firestore_up = redis_ok(), firestore_ok()
    counts = listener_counts() if redis_up else {"listeners_count": 0, "workflow_listeners_count": 0}
    healthy = redis_up and firestore_up
    body = {
        "status": "ok" if healthy else "degraded",
        "version": settings.SERVICE_VERSION,
        "listeners_count": counts["listeners_count"],
        "workflow_listeners_count": counts["workflow_listeners_count"],
        "redis": "ok" if redis_up else "error",
        "firestore": "ok" if firestore_up else "error",
        "uptime_s": int(time.monotonic() - STARTED_AT),
        "region": settings.AWS_REGION_NAME,
    }
    return JsonResponse(body, status=200 if healthy else 503)


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    if redis_ok():
        return JsonResponse({"ok": True})
    return JsonResponse({"ok": False, "error": "redis_unavailable"}, status=503)


@require_GET
def version(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"version": settings.SERVICE_VERSION})


def _location(describe: Callable[[], dict[str, str]]) -> dict[str, str]:
    """Hosts, ports and paths help on a laptop and only help an intruder in production."""
    return {} if settings.IS_PROD else describe()


def _workflow_block() -> dict[str, Any]:
    if not redis_ok():
        return {"status": "unknown", "enabled": settings.WORKFLOW_LISTENER_ENABLED}
    return workflow_listener_status(with_users=not settings.IS_PROD)


@require_GET
def debug(request: HttpRequest) -> JsonResponse:
    """Authenticated: which backends this process talks to and whether they answer (no user ids, no secrets)."""
    try:
        authenticate(bearer_token(request.META.get("HTTP_AUTHORIZATION")))
    except RpcError as error:
        return JsonResponse({"error": error.as_dict()}, status=error.http_status)
    counts = listener_counts() if redis_ok() else {}
    return JsonResponse(
        {
            "redis": {"status": "ok" if redis_adapter.ping() else "error"},
            "firestore": {"status": "ok" if firebase_adapter.ping() else "error", **_location(firebase_adapter.describe)},
            "rtdb": {"status": "ok" if rtdb_adapter.ping() else "error", **_location(rtdb_adapter.describe)},
            "chroma": {"status": "ok" if chroma_adapter.ping() else "error", **_location(chroma_adapter.describe)},
            "listeners": {"status": "ok" if counts else "unknown", **counts},
            "workflow_listeners": _workflow_block(),
        }
    )


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    return HttpResponse(gateway_metrics.exposition(), content_type=gateway_metrics.CONTENT_TYPE)
