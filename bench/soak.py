"""Login-path soak: RSS of the gateway process over time under sustained ``REGISTRY.register_user`` load.

    .venv/bin/python bench/soak.py [--minutes 2] [--mode LOCAL|PROD] [--clients 32] [--sample-s 10]
    .venv/bin/python bench/soak.py --minutes 10          # the issue's 10-minute run

Starts a Valkey and one gateway (uvicorn) on free loopback ports, drives register_user (a new session and
idempotency key per call, with a /healthz probe client alongside) for the duration, and samples the gateway's RSS
(/proc/<pid>/status VmRSS) every ``--sample-s``. PROD mode runs the production settings (DEBUG off) with
placeholder Firebase endpoints that the login path never contacts. It prints the RSS table, the growth over the run
after the first fifth (warm-up), and the error count; the process exits 1 when that growth passes ``--max-growth-mb``.
"""
from __future__ import annotations

import argparse
import secrets
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def soak_env(mode: str, run_dir: Path, redis_port: int, token: str) -> dict[str, str]:
    from bench.rpc import gateway_env

    env = gateway_env(run_dir, redis_port, token)
    env.pop("DJANGO_DEBUG")  # each mode's own default: on in LOCAL, off in PROD
    if mode == "PROD":
        env.update({
            "GATEWAY_MODE": "PROD", "DJANGO_SECRET_KEY": secrets.token_urlsafe(50), "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            # never contacted by the login path; PROD refuses to start without them
            "FIRESTORE_EMULATOR_HOST": "127.0.0.1:9", "FIREBASE_REALTIME_DB_URL": "http://127.0.0.1:9",
            "FIREBASE_PROJECT_ID": "soak",
        })
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=2.0, help="Load duration (default 2; the issue's run: 10).")
    parser.add_argument("--mode", choices=("LOCAL", "PROD"), default="LOCAL")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--sample-s", type=float, default=10.0, help="RSS sampling interval (default 10 s).")
    parser.add_argument("--max-growth-mb", type=float, default=10.0, help="Allowed growth after warm-up.")
    args = parser.parse_args()

    import subprocess

    from bench.login_load import run_load
    from devstack import services as dev_services
    from devstack.processes import free_port

    run_dir = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    redis_port, port, token = free_port(), free_port(), secrets.token_urlsafe(24)
    env = soak_env(args.mode, run_dir, redis_port, token)
    valkey = dev_services.valkey(redis_port, run_dir).start()
    gateway = None
    try:
        subprocess.run([sys.executable, str(BASE_DIR / "manage.py"), "migrate", "--noinput"], env=env, cwd=BASE_DIR,
                       check=True, capture_output=True)
        gateway = dev_services.asgi_server(port, run_dir, env, name="gateway").start()
        pid = gateway.process.pid
        seconds = args.minutes * 60
        results: dict[str, object] = {}
        loads = [
            threading.Thread(target=lambda mode=mode, clients=clients: results.__setitem__(mode, run_load(
                f"127.0.0.1:{port}", token, mode, clients=clients, warmup_s=0.5, seconds=seconds)))
            for mode, clients in (("register", args.clients), ("healthz", 1))
        ]
        for load in loads:
            load.start()
        samples = [(0.0, rss_mb(pid))]
        started = time.monotonic()
        while loads[0].is_alive():
            loads[0].join(timeout=args.sample_s)
            samples.append((time.monotonic() - started, rss_mb(pid)))
        for load in loads:
            load.join()
    finally:
        if gateway is not None:
            gateway.stop()
        valkey.stop()
        shutil.rmtree(run_dir, ignore_errors=True)

    register, healthz = results["register"], results["healthz"]
    print(f"\nSoak, {args.mode}: register_user at {args.clients} clients + 1 /healthz client, {args.minutes:g} min")
    print("| t (s) | gateway RSS (MB) |\n|---:|---:|")
    for at, mb in samples:
        print(f"| {at:.0f} | {mb:.1f} |")
    warm = [mb for at, mb in samples if at >= seconds / 5]
    growth = (warm[-1] - warm[0]) if len(warm) > 1 else 0.0
    print(f"\nregister_user: {register.requests:,} calls ({register.throughput:,.0f}/s), {register.errors} errors; "
          f"/healthz: {healthz.requests:,} calls, {healthz.errors} errors")
    print(f"RSS growth after warm-up (t >= {seconds / 5:.0f} s): {growth:+.1f} MB (limit {args.max_growth_mb:g} MB)")
    return 0 if growth <= args.max_growth_mb and register.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
