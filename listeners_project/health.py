"""Health endpoints (contract §4). Truthful within REFRESH_S: ``degraded`` + 503 when Redis or Firestore can't be
reached, from probes refreshed in the background (never one backend probe per request)."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Generic, TypeVar

import redis
import structlog
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
from workflows import selectors as workflow_selectors

log = structlog.get_logger(__name__)
T = TypeVar("T")

STARTED_AT = time.monotonic()
REFRESH_S = 1.0  # each probe runs at most this often per process, whatever the request rate
_FIRST_PROBE_WAIT_S = 5.0


class BackgroundProbe(Generic[T]):
    """A probe run on its own daemon thread every REFRESH_S; requests read its last result and never wait for a
    backend (one probe per request made /healthz as slow as Firestore). One thread per probe, so a slow
    one (Firestore's 3 s timeout) never delays another. The thread starts on the first read, which waits for the
    first result; after that a result is at most REFRESH_S plus one probe's duration old."""

    def __init__(self, name: str, probe: Callable[[], T], failed: T) -> None:
        self._name = name
        self._probe = probe
        self._failed = failed
        self._value: T = failed
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __call__(self) -> T:
        if not self._ready.is_set():
            self.start()
            self._ready.wait(_FIRST_PROBE_WAIT_S)
        return self._value

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"health-{self._name}", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                self._value = self._probe()
            except Exception:  # noqa: BLE001 - a probe that breaks reports its backend down; the reason is logged
                log.warning("health_probe_failed", probe=self._name, exc_info=True)
                self._value = self._failed
            self._ready.set()
            time.sleep(REFRESH_S)


_NO_LISTENERS = {"listeners_count": 0, "workflow_listeners_count": 0}


def _listener_counts() -> dict[str, int]:
    try:
        return workflow_selectors.listener_counts()
    except (redis.RedisError, OSError):  # Redis down: the redis probe reports it
        return _NO_LISTENERS

redis_ok = BackgroundProbe("redis", redis_adapter.ping, False)
firestore_ok = BackgroundProbe("firestore", firebase_adapter.ping, False)
listener_counts = BackgroundProbe("listeners", _listener_counts, _NO_LISTENERS)


def start_probes() -> None:
    for probe in (redis_ok, firestore_ok, listener_counts):
        probe.start()


def healthz_state() -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of /healthz from the probes' last results (contract §4)."""
    redis_up, firestore_up = redis_ok(), firestore_ok()
    counts = listener_counts() if redis_up else _NO_LISTENERS
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
    return (200 if healthy else 503), body


def readyz_state() -> tuple[int, dict[str, Any]]:
    if redis_ok():
        return 200, {"ok": True}
    return 503, {"ok": False, "error": "redis_unavailable"}


def version_state() -> tuple[int, dict[str, Any]]:
    return 200, {"version": settings.SERVICE_VERSION}


# What listeners_project.health_asgi answers before Django, and the Django views below serve (test client, or a
# deployment that mounts Django alone): the same functions, so both front ends say the same thing.
STATES: dict[str, Callable[[], tuple[int, dict[str, Any]]]] = {
    "/healthz": healthz_state, "/readyz": readyz_state, "/version": version_state,
}


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    status, body = healthz_state()
    return JsonResponse(body, status=status)


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    status, body = readyz_state()
    return JsonResponse(body, status=status)


@require_GET
def version(request: HttpRequest) -> JsonResponse:
    status, body = version_state()
    return JsonResponse(body, status=status)


def _location(describe: Callable[[], dict[str, str]]) -> dict[str, str]:
    """Hosts, ports and paths help on a laptop and only help an intruder in production."""
    return {} if settings.IS_PROD else describe()


def _workflow_block() -> dict[str, Any]:
    if not redis_ok():
        return {"status": "unknown", "enabled": settings.WORKFLOW_LISTENER_ENABLED}
    return workflow_selectors.workflow_listener_status(with_users=not settings.IS_PROD)


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
