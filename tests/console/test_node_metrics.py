"""Metrics for a whole node: two uvicorn worker processes on one port share PROMETHEUS_MULTIPROC_DIR, and one scrape
of /metrics, whichever process answers it, reports the sum of both (core/metrics.py, ``exposition``)."""
from __future__ import annotations

import json
import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import start_gateway, wait_until
from tests.realtime.wsclient import open_ws

pytestmark = pytest.mark.slow

BATCH = 16


def _get(url: str, **headers: str) -> bytes:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:  # noqa: S310
        return response.read()


def _ping(address: str, token: str) -> None:
    request = urllib.request.Request(  # a new connection per call: the kernel spreads them over the two processes
        f"http://{address}/rpc", data=json.dumps({"method": "REGISTRY.ping", "args": []}).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Connection": "close"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback URL we built
        assert json.loads(response.read())["ok"]


def _sample(text: str, series: str) -> float:
    """The value of one series line (name with its labels, as exported) in Prometheus text."""
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_one_scrape_reports_the_sum_of_both_processes(stack, service_token, tmp_path):
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    gateway, address = start_gateway(
        stack, extra_env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}, name="asgi-two-workers",
        server_options=["--workers", "2"],
    )
    sockets = []
    try:
        # Both worker processes are up (each wrote its metric files) before the calls are spread over them.
        wait_until(lambda: len({p.name.rsplit("_", 1)[-1] for p in metrics_dir.glob("*.db")}) >= 2, timeout=60,
                   message="two processes never wrote metrics")
        calls_made = 0

        def both_processes_answered_calls() -> bool:
            nonlocal calls_made
            with ThreadPoolExecutor(max_workers=8) as pool:  # concurrent connections: both processes accept some
                list(pool.map(lambda _: _ping(address, service_token), range(BATCH)))
            calls_made += BATCH
            return len(list(metrics_dir.glob("histogram_*.db"))) == 2  # one histogram file per process that served

        wait_until(both_processes_answered_calls, timeout=60, message="one process answered every call")
        sockets = [open_ws(address, service_token, uid=f"metrics-{n}") for n in range(4)]
        calls = 'gateway_rpc_calls_total{code="OK",method="REGISTRY.ping"}'
        for _ in range(6):  # several scrapes, answered by either process: always the node's sum
            text = _get(f"http://{address}/metrics").decode()
            assert _sample(text, calls) == calls_made, text[:2000]
            assert _sample(text, 'gateway_rpc_duration_seconds_count{method="REGISTRY.ping"}') == calls_made
        wait_until(lambda: _sample(_get(f"http://{address}/metrics").decode(), "gateway_ws_connections") == 4)
        text = _get(f"http://{address}/metrics").decode()
        for series in ("gateway_rpc_duration_seconds_bucket", "gateway_ws_connections", "gateway_users_online",
                       "gateway_rpc_calls_total"):
            assert series in text
    finally:
        for ws in sockets:
            ws.close()
        gateway.stop()


@pytest.mark.django_db(transaction=True)
def test_a_listeners_worker_on_the_node_is_in_the_same_scrape(stack, tmp_path):
    """The worker shares the node's PROMETHEUS_MULTIPROC_DIR: its listener gauges and the events it publishes appear
    in the ASGI process's /metrics, and leave it when the worker stops."""
    import os

    from devstack import services
    from realtime import presence
    from workflows import ownership

    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    node_env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    gateway, address = start_gateway(stack, extra_env=node_env, name="asgi-node-with-worker")
    worker = services.manage_py(
        "worker-node-metrics", ["run_listeners", "--worker-id", "worker-node-metrics"], stack.run_dir,
        {**os.environ, **stack.env, **node_env}, ready=lambda: ownership.registered_workers().get("worker-node-metrics"),
    ).start()
    active = 'gateway_listeners_active{kind="notifications"}'
    try:
        presence.join("node-metrics-user", presence.session_member("s1"))
        wait_until(lambda: _sample(_get(f"http://{address}/metrics").decode(), active) == 1, timeout=60,
                   message="the worker's gauge never reached the node's scrape")
        # The gateway itself published nothing: these are the worker's notif.sync/msg.sync, counted in the same scrape.
        wait_until(lambda: _sample(_get(f"http://{address}/metrics").decode(),
                                   'gateway_events_published_total{type="notif.sync"}') >= 1, timeout=60)
    finally:
        worker.stop()
    try:
        # A stopped worker marks its files dead: its live gauges no longer count.
        wait_until(lambda: _sample(_get(f"http://{address}/metrics").decode(), active) == 0, timeout=30)
    finally:
        gateway.stop()
