"""Latency of FIREBASE_MANAGEMENT methods through /rpc against the same Firestore SDK call made directly.

    .venv/bin/python bench/firebase_rpc.py            # 400 calls per row
    .venv/bin/python bench/firebase_rpc.py --quick    # smoke run (40 calls per row)

Starts its own Valkey, Firestore emulator and RTDB stand-in on free loopback ports (devstack/services.py), seeds the
demo tenant, starts one uvicorn gateway (devstack.services.asgi_server), and stops everything it started on exit.
Both processes build their Firestore client with the same code (core.integrations.firebase) and the same
environment. Per method, the rows are measured interleaved, one call of each per round, in an order that rotates
every round: the emulator answers faster when called again right away, so a fixed order would favour whichever row
comes second.

* ``direct SDK``  — the google-cloud-firestore call in this process, including turning snapshots into dicts (what any
                    caller does with the SDK's answer, and what the method returns);
* ``in-process``  — the registered function called directly (SDK call + its own work, e.g. the event publish);
* ``/rpc``        — POST /rpc over one keep-alive socket, one send per request (bench/rpc.py's client): auth, envelope,
                    idempotency key, worker thread and JSON, with next to no client cost;
* ``/rpc httpx``  — the same request through httpx, the transport of client/gateway_client: the gap to ``/rpc`` is
                    the HTTP client library's own cost, which no change to the gateway can remove.

Target: ``/rpc`` p50 ≤ ``direct SDK`` p50 + 3 ms.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

UID = "bench_user"
TARGET_OVERHEAD_MS = 3.0
Call = Callable[[int], object]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class KeepAliveClient:
    """Minimal HTTP/1.1 keep-alive client: the whole request in one send, the response read to its Content-Length.

    httpx writes the headers and the body in two sends (so the server wakes up twice) and runs ~1 ms of its own
    Python per call on this machine; a row meant to measure the gateway must not be dominated by its client.
    """

    def __init__(self, host: str, port: int, token: str) -> None:
        self._sock = socket.create_connection((host, port), timeout=30)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader = self._sock.makefile("rb")
        self._address = (host, port, token)

    def post(self, body: bytes) -> tuple[int, bytes]:
        from bench.login_load import post_bytes  # the request the load clients send

        self._sock.sendall(post_bytes(*self._address, body))
        status = int(self._reader.readline().split()[1])
        length = 0
        while (line := self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, self._reader.read(length)

    def close(self) -> None:
        self._reader.close()
        self._sock.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 40 calls per row")
    parser.add_argument("--calls", type=int, default=400, help="calls per row (default 400)")
    options = parser.parse_args()
    calls = 40 if options.quick else options.calls

    # Same log level in this process (direct and in-process rows) as in the gateway.
    os.environ["LOG_LEVEL"] = "WARNING"
    from devstack import services
    from devstack.processes import free_port
    from devstack.stack_for_tests import start_service_stack

    stack = start_service_stack()  # exports the stack's env into os.environ, as the tests do
    gateway = None
    try:
        env = {**os.environ, **stack.env}
        subprocess.run([sys.executable, str(BASE_DIR / "manage.py"), "migrate", "--noinput"], env=env, cwd=BASE_DIR,
                       check=True, capture_output=True)
        port = free_port()
        gateway = services.asgi_server(port, stack.run_dir, env, name="bench-gateway").start()
        rows = run_benchmark("127.0.0.1", port, stack.service_token, calls)
    finally:
        if gateway is not None:
            gateway.stop()
        stack.stop()
    print_table(rows, calls)
    return 0


def run_benchmark(host: str, port: int, token: str, calls: int) -> list[tuple[str, str, list[float]]]:
    import django
    import httpx

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "listeners_project.settings")
    django.setup()
    from google.cloud import firestore
    from google.cloud.firestore_v1 import FieldFilter

    from firebase_data import jobs
    from firebase_data.demo_tenant import build_demo_tenant
    from core.integrations.firebase import get_firestore

    build_demo_tenant(UID)
    db = get_firestore()
    notifications = f"clients/{UID}/notifications"
    raw = KeepAliveClient(host, port, token)
    http = httpx.Client(base_url=f"http://{host}:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def envelope(method: str, args: tuple, write: bool, namespace: str) -> dict:
        body: dict = {"method": f"{namespace}.{method}", "args": list(args), "user_id": UID}
        if write:
            body["idempotency_key"] = uuid.uuid4().hex  # a fresh key per call, as gateway_client sends
        return body

    def check(method: str, status: int, payload: bytes) -> None:
        if status != 200 or not json.loads(payload)["ok"]:
            raise RuntimeError(f"{method} failed: {status} {payload[:300]!r}")

    def rpc(method: str, *args: object, write: bool = False, namespace: str = "FIREBASE_MANAGEMENT") -> None:
        check(method, *raw.post(json.dumps(envelope(method, args, write, namespace)).encode()))

    def rpc_httpx(method: str, *args: object, write: bool = False, namespace: str = "FIREBASE_MANAGEMENT") -> None:
        response = http.post("/rpc", json=envelope(method, args, write, namespace))
        check(method, response.status_code, response.content)

    def job(n: int) -> dict:
        return {"job_id": f"bench_job_{n % 50:03d}", "status": "running", "function_name": "APbookeeper",
                "batch_id": "bench", "file_name": "bench.pdf", "read": False}

    def direct_write(n: int) -> None:
        data = job(n)
        db.collection(notifications).document(data["job_id"]).set({**data, "timestamp": firestore.SERVER_TIMESTAMP},
                                                                     merge=True)

    def direct_unread(n: int) -> list[dict]:
        query = db.collection(notifications).where(filter=FieldFilter("read", "==", False))
        snapshots = query.order_by("timestamp", direction=firestore.Query.DESCENDING).limit(50).stream()
        return [{**(snapshot.to_dict() or {}), "id": snapshot.id} for snapshot in snapshots]

    scenarios: dict[str, dict[str, Call]] = {
        "add_or_update_job_by_job_id": {
            "direct SDK": direct_write,
            "in-process": lambda n: jobs.add_or_update_job_by_job_id(notifications, job(n)),
            "/rpc": lambda n: rpc("add_or_update_job_by_job_id", notifications, job(n), write=True),
            "/rpc httpx": lambda n: rpc_httpx("add_or_update_job_by_job_id", notifications, job(n), write=True),
        },
        "get_unread_notifications": {
            "direct SDK": direct_unread,
            "in-process": lambda n: jobs.get_unread_notifications(UID, 50),
            "/rpc": lambda n: rpc("get_unread_notifications", UID, 50),
            "/rpc httpx": lambda n: rpc_httpx("get_unread_notifications", UID, 50),
        },
        # The gateway's own floor: a no-op method, with and without an idempotency key (no Firestore at all).
        "REGISTRY.ping (no-op)": {
            "direct SDK": lambda n: None,
            "/rpc": lambda n: rpc("ping", namespace="REGISTRY"),
            "/rpc +idem": lambda n: rpc("ping", namespace="REGISTRY", write=True),
            "/rpc httpx": lambda n: rpc_httpx("ping", namespace="REGISTRY"),
        },
    }
    rows = []
    for method, variants in scenarios.items():
        rows.extend((method, name, values) for name, values in measure(variants, calls).items())
    raw.close()
    http.close()
    return rows


def measure(variants: dict[str, Call], calls: int) -> dict[str, list[float]]:
    """``calls`` timed calls per variant, one of each per round, the order rotating by one every round."""
    names = list(variants)
    for n in range(max(20, calls // 10)):  # warm-up: connections, caches, the emulator's JIT
        for name in names:
            variants[name](n)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for n in range(calls):
        shift = n % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            variants[name](n)
            samples[name].append((time.perf_counter() - started) * 1000)
    return samples


def print_table(rows: list[tuple[str, str, list[float]]], calls: int) -> None:
    print(f"\nFIREBASE_MANAGEMENT latency, {calls} calls per row (ms; emulator and gateway on this machine)\n")
    header = f"{'method':<30} {'path':<11} {'p50':>7} {'p99':>7} {'mean':>7} {'p50 - direct':>13}"
    print(header)
    print("-" * len(header))
    direct_p50: dict[str, float] = {}
    overheads: dict[tuple[str, str], float] = {}
    for method, name, values in rows:
        p50 = statistics.median(values)
        if name == "direct SDK":
            direct_p50[method] = p50
        overheads[method, name] = p50 - direct_p50[method]
        print(f"{method:<30} {name:<11} {p50:7.2f} {percentile(values, 0.99):7.2f} {statistics.fmean(values):7.2f} "
              f"{'' if name == 'direct SDK' else f'{overheads[method, name]:+.2f}':>13}")
    print()
    for method in direct_p50:
        if method.startswith("REGISTRY"):
            continue
        overhead = overheads[method, "/rpc"]
        status = "OK" if overhead <= TARGET_OVERHEAD_MS else "OVER TARGET"
        print(f"{method}: /rpc p50 overhead {overhead:+.2f} ms (target ≤ +{TARGET_OVERHEAD_MS:.0f} ms) {status}; "
              f"through httpx {overheads[method, '/rpc httpx']:+.2f} ms")
    floor = "REGISTRY.ping (no-op)"
    print(f"gateway floor (REGISTRY.ping p50): {overheads[floor, '/rpc']:.2f} ms without, "
          f"{overheads[floor, '/rpc +idem']:.2f} ms with an idempotency key (two Valkey round trips); "
          f"{overheads[floor, '/rpc httpx']:.2f} ms through httpx")


if __name__ == "__main__":
    raise SystemExit(main())
