"""Latency of FIREBASE_MANAGEMENT methods through /rpc against the same Firestore SDK call made directly.

    .venv/bin/python bench/firebase_rpc.py            # 400 calls per row
    .venv/bin/python bench/firebase_rpc.py --quick    # smoke run (40 calls per row)

Starts its own Valkey, Firestore emulator and RTDB stand-in on free loopback ports (devstack/services.py), seeds the
demo tenant, starts one uvicorn gateway (devstack.services.asgi_server), and stops everything it started on exit.
Per method, three rows, measured interleaved (one call of each per round, so machine load hits them alike):

* ``direct SDK``  — the raw google-cloud-firestore call in this process (what the method does to Firestore);
* ``in-process``  — the registered function called directly (SDK call + its own work, e.g. the event publish);
* ``/rpc``        — an HTTP POST to the gateway with auth, envelope, idempotency key, thread pool and JSON.

Target: ``/rpc`` p50 ≤ ``direct SDK`` p50 + 3 ms.
"""
from __future__ import annotations

import argparse
import os
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


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 40 calls per row")
    parser.add_argument("--calls", type=int, default=400, help="calls per row (default 400)")
    options = parser.parse_args()
    calls = 40 if options.quick else options.calls

    from devstack import services
    from devstack.processes import free_port
    from devstack.stack_for_tests import start_service_stack

    stack = start_service_stack()  # exports the stack's env into os.environ, as the tests do
    gateway = None
    try:
        env = {**os.environ, **stack.env, "LOG_LEVEL": "WARNING"}
        subprocess.run([sys.executable, str(BASE_DIR / "manage.py"), "migrate", "--noinput"], env=env, cwd=BASE_DIR,
                       check=True, capture_output=True)
        port = free_port()
        gateway = services.asgi_server(port, stack.run_dir, env, name="bench-gateway").start()
        rows = run_benchmark(f"http://127.0.0.1:{port}", stack.service_token, calls)
    finally:
        if gateway is not None:
            gateway.stop()
        stack.stop()
    print_table(rows, calls)
    return 0


def run_benchmark(base_url: str, token: str, calls: int) -> list[tuple[str, str, list[float]]]:
    import django
    import httpx

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "listeners_project.settings")
    django.setup()
    from google.cloud import firestore
    from google.cloud.firestore_v1 import FieldFilter

    from firebase_data import jobs
    from firebase_data.demo_tenant import build_demo_tenant
    from listeners_project.adapters.firebase import get_firestore

    build_demo_tenant(UID)
    db = get_firestore()
    notifications = f"clients/{UID}/notifications"
    http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def rpc(method: str, *args: object, write: bool = False, namespace: str = "FIREBASE_MANAGEMENT") -> None:
        body = {"method": f"{namespace}.{method}", "args": list(args), "user_id": UID}
        if write:
            body["idempotency_key"] = uuid.uuid4().hex
        response = http.post("/rpc", json=body)
        if response.status_code != 200 or not response.json()["ok"]:
            raise RuntimeError(f"{method} failed: {response.text[:300]}")

    def job(n: int) -> dict:
        return {"job_id": f"bench_job_{n % 50:03d}", "status": "running", "function_name": "APbookeeper",
                "batch_id": "bench", "file_name": "bench.pdf", "read": False}

    def direct_write(n: int) -> None:
        data = job(n)
        db.collection(notifications).document(data["job_id"]).set({**data, "timestamp": firestore.SERVER_TIMESTAMP},
                                                                     merge=True)

    def direct_unread(n: int) -> None:
        query = db.collection(notifications).where(filter=FieldFilter("read", "==", False))
        list(query.order_by("timestamp", direction=firestore.Query.DESCENDING).limit(50).stream())

    scenarios: dict[str, dict[str, Callable[[int], None]]] = {
        "add_or_update_job_by_job_id": {
            "direct SDK": direct_write,
            "in-process": lambda n: jobs.add_or_update_job_by_job_id(notifications, job(n)),
            "/rpc": lambda n: rpc("add_or_update_job_by_job_id", notifications, job(n), write=True),
        },
        "get_unread_notifications": {
            "direct SDK": direct_unread,
            "in-process": lambda n: jobs.get_unread_notifications(UID, 50),
            "/rpc": lambda n: rpc("get_unread_notifications", UID, 50),
        },
        # The gateway's own floor: a no-op method, with and without an idempotency key (no Firestore at all).
        "REGISTRY.ping (no-op)": {
            "direct SDK": lambda n: None,
            "/rpc read": lambda n: rpc("ping", namespace="REGISTRY"),
            "/rpc +idem": lambda n: rpc("ping", namespace="REGISTRY", write=True),
        },
    }
    rows = []
    for method, variants in scenarios.items():
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for n in range(calls // 10):  # warm-up: connections, caches, JIT of the emulator
            for call in variants.values():
                call(n)
        for n in range(calls):
            for name, call in variants.items():
                started = time.perf_counter()
                call(n)
                samples[name].append((time.perf_counter() - started) * 1000)
        rows.extend((method, name, values) for name, values in samples.items())
    http.close()
    return rows


def print_table(rows: list[tuple[str, str, list[float]]], calls: int) -> None:
    print(f"\nFIREBASE_MANAGEMENT latency, {calls} calls per row (ms; emulator and gateway on this machine)\n")
    header = f"{'method':<30} {'path':<11} {'p50':>7} {'p99':>7} {'mean':>7} {'p50 - direct':>13}"
    print(header)
    print("-" * len(header))
    direct_p50: dict[str, float] = {}
    verdicts = []
    for method, name, values in rows:
        p50 = statistics.median(values)
        if name == "direct SDK":
            direct_p50[method] = p50
        overhead = p50 - direct_p50[method]
        print(f"{method:<30} {name:<11} {p50:7.2f} {percentile(values, 0.99):7.2f} {statistics.fmean(values):7.2f} "
              f"{'' if name == 'direct SDK' else f'{overhead:+.2f}':>13}")
        if name == "/rpc":
            verdicts.append((method, overhead))
    floor = {name: statistics.median(values) for method, name, values in rows if method.startswith("REGISTRY")}
    print()
    for method, overhead in verdicts:
        status = "OK" if overhead <= TARGET_OVERHEAD_MS else "OVER TARGET"
        print(f"{method}: /rpc p50 overhead {overhead:+.2f} ms (target ≤ +{TARGET_OVERHEAD_MS:.0f} ms) {status}")
    print(f"gateway floor (REGISTRY.ping p50): {floor['/rpc read']:.2f} ms without, {floor['/rpc +idem']:.2f} ms with an "
          "idempotency key — the part of the overhead that is not the Firestore method's")


if __name__ == "__main__":
    raise SystemExit(main())
