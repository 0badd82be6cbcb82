from __future__ import annotations

import httpx
import pytest

from tests.conftest import wait_until

pytestmark = pytest.mark.django_db


def test_healthz_reports_ok_with_contract_keys(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert {"status", "version", "listeners_count", "workflow_listeners_count", "redis", "uptime_s", "region"} <= set(body)
    assert body["redis"] == "ok"


def test_readyz_and_version(client):
    assert client.get("/readyz").json() == {"ok": True}
    assert client.get("/version").json()["version"]


def test_debug_requires_auth_and_names_emulators(client, service_token, stack):
    assert client.get("/debug").status_code == 401
    assert client.get("/debug", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    body = client.get("/debug", HTTP_AUTHORIZATION=f"Bearer {service_token}").json()
    assert body["redis"]["status"] == "ok"
    assert body["firestore"]["status"] == "ok"
    assert body["firestore"]["emulator_host"] == f"127.0.0.1:{stack.firestore_port}"
    assert body["firestore"]["project_id"]
    assert body["rtdb"]["status"] == "ok"
    assert str(stack.rtdb_port) in body["rtdb"]["url"]
    assert service_token not in str(body)


def test_metrics_is_prometheus_text(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert b"gateway_rpc_calls_total" in response.content


def test_healthz_turns_degraded_when_valkey_stops_and_recovers(stack, live_gateway):
    """Stop the real Valkey under a running server: 503 within 5 s, ok again after restart."""
    url = f"http://{live_gateway}/healthz"
    assert httpx.get(url).json()["status"] == "ok"
    stack.processes["valkey"].kill()
    try:
        degraded = wait_until(lambda: (r := httpx.get(url, timeout=10)).status_code == 503 and r, timeout=5)
        assert degraded.json()["status"] == "degraded"
        assert degraded.json()["redis"] == "error"
    finally:
        stack.restart("valkey")
    wait_until(lambda: httpx.get(url, timeout=10).status_code == 200, timeout=15)
    assert httpx.get(url).json()["status"] == "ok"


def test_in_prod_debug_names_no_hosts_or_paths(client, service_token, stack, settings):
    settings.IS_PROD = True
    body = client.get("/debug", HTTP_AUTHORIZATION=f"Bearer {service_token}").json()
    assert {body[name]["status"] for name in ("redis", "firestore", "rtdb", "chroma")} == {"ok"}
    assert all(set(body[name]) == {"status"} for name in ("firestore", "rtdb", "chroma"))
    assert str(stack.firestore_port) not in str(body) and str(stack.rtdb_port) not in str(body)


@pytest.mark.parametrize("path", ["/metrics", "/openapi.json"])
def test_in_prod_metrics_and_the_schema_need_the_token(client, service_token, settings, path):
    assert client.get(path).status_code == 200  # LOCAL: open for the dev stack
    settings.IS_PROD = True
    assert client.get(path).status_code == 401
    assert client.get(path, HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get(path, HTTP_AUTHORIZATION=f"Bearer {service_token}").status_code == 200


def test_health_is_answered_before_djangos_middleware_from_cached_probes(stack, live_gateway):
    """/healthz, /readyz, /version skip the middleware (no X-Frame-Options from Django's clickjacking middleware)
    and never probe a backend per request: 200 requests cost a handful of PINGs (1 per second per process)."""
    import redis

    client = redis.Redis(port=stack.redis_port)
    with httpx.Client(base_url=f"http://{live_gateway}") as http:
        assert http.get("/healthz").status_code == 200  # probes started
        pings_before = client.info("commandstats").get("cmdstat_ping", {}).get("calls", 0)
        for _ in range(200):
            response = http.get("/healthz")
            assert response.status_code == 200 and "x-frame-options" not in response.headers
        pings = client.info("commandstats").get("cmdstat_ping", {}).get("calls", 0) - pings_before
        assert pings < 50, pings
        assert http.get("/readyz").json() == {"ok": True} and "x-frame-options" not in http.get("/readyz").headers
        assert http.get("/version").json()["version"]
        head = http.head("/healthz")
        assert head.status_code == 200 and head.content == b""
        assert "x-frame-options" in http.post("/healthz").headers  # not ours: Django answers it (CSRF, 403)
        assert "x-frame-options" in http.get("/admin/login/").headers  # and Django's pages keep their middleware
