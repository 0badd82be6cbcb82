"""Session registry benchmark: the login path against its floor, and unregister O(1) as the registry grows.

    .venv/bin/python bench/registry.py [--rounds 3] [--seconds 5] [--clients 32] [--sizes 1000,10000]
                                       [--original-sample 100] [--login-only | --scaling-only] [--profile]

Login path (issue 21): a gateway (uvicorn, one process) and a floor (bench/login_floor.py: a bare ASGI app running
the same Redis script per request) on the same Valkey; bench/login_load.py drives each with 32 keep-alive clients
in a closed loop: ``register_user`` (a new session per call), ``heartbeat``, ``unregister`` (of sessions registered
beforehand) and ``GET /healthz``. Targets alternate, round after round; the table gives the median round's numbers
and the gateway/floor ratio. No Firestore runs here, so the gateway's /healthz answers 503 (degraded) from its
cached probes; the floor answers a fixed body. Either way it is one complete answer.

Scaling:
one run starts a private Valkey on a free loopback port and a fresh SQLite file database in a temp dir, then for each
size N: registers N sessions (N/2 users, two sessions each) through ``registry.services.register_session``, and
unregisters every one of them in random order through ``registry.services.unregister_session`` (what
``REGISTRY.unregister_session`` calls), timing each call. It counts the SQL queries and the Redis commands per
unregister (INFO commandstats, which also counts the commands a Lua script runs) and fails if any SCAN or KEYS ran.

For contrast it replays the original service's algorithm (§6b of the reference: one hash ``registry:user:{uid}``
per user, unregister = SCAN ``registry:user:*`` COUNT 200 + HGET per key) on the same Valkey with N users, over a
sample of calls: its cost grows with N.
"""
from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))


def _setup(run_dir: Path, redis_port: int) -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "listeners_project.settings",
            "GATEWAY_MODE": "LOCAL",
            "DJANGO_DEBUG": "false",
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "DATABASE_URL": f"sqlite:///{run_dir / 'bench.sqlite3'}",
            "CHROMA_PATH": str(run_dir / "chroma"),
            "LISTENERS_SERVICE_TOKEN": secrets.token_urlsafe(24),
            "NO_GCE_CHECK": "true",
            "LOG_LEVEL": "WARNING",
        }
    )
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _command_calls(client) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): stats["calls"] for name, stats in client.info("commandstats").items()}


def measure_ours(size: int) -> dict[str, float]:
    from django.db import connection

    from core.integrations.redis import get_redis
    from realtime import presence
    from registry import services

    client = get_redis()
    client.flushall()
    sessions = [(f"user-{n // 2}", f"sess-{n}") for n in range(size)]
    register_ms = []
    for user_id, session_id in sessions:
        started = time.perf_counter()
        services.register_session(user_id=user_id, session_id=session_id, backend_route="bench")
        register_ms.append((time.perf_counter() - started) * 1000)

    random.shuffle(sessions)
    client.config_resetstat()
    unregister_ms = []
    statements = 0

    def count_statements(execute, sql, params, many, context):  # noqa: ANN001, ANN202 - Django's wrapper signature
        nonlocal statements
        statements += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count_statements):
        for user_id, session_id in sessions:
            started = time.perf_counter()
            assert services.unregister_session(user_id=user_id, session_id=session_id) is True
            unregister_ms.append((time.perf_counter() - started) * 1000)
    calls = _command_calls(client)
    calls.pop("config|resetstat", None)
    calls.pop("info", None)
    scans = sum(count for name, count in calls.items() if name.split("|")[0] in {"scan", "keys"})
    if scans:
        raise SystemExit(f"unregister ran {scans} SCAN/KEYS commands")
    assert presence.count_online() == 0 and statements == 0
    return {
        "register_p50": _percentile(register_ms, 0.5),
        "p50": _percentile(unregister_ms, 0.5),
        "p99": _percentile(unregister_ms, 0.99),
        "mean": statistics.fmean(unregister_ms),
        "sql_per_op": statements / size,
        "redis_per_op": sum(calls.values()) / size,
        "scans": scans,
    }


def measure_original(size: int, sample: int) -> float:
    """The original RegistryWrapper: one hash per user, unregister = SCAN registry:user:* + HGET each (p50, ms)."""
    from core.integrations.redis import get_redis

    client = get_redis()
    client.flushall()
    pipe = client.pipeline(transaction=False)
    for n in range(size):
        pipe.hset(f"registry:user:user-{n}", mapping={"user_id": f"user-{n}", "session_id": f"sess-{n}"})
        pipe.expire(f"registry:user:user-{n}", 86400)
    pipe.execute()

    def unregister(session_id: str) -> bool:
        deleted = 0
        for key in client.scan_iter(match="registry:user:*", count=200):
            if client.hget(key, "session_id") == session_id.encode():
                deleted += client.delete(key)
        return deleted > 0

    timings = []
    for n in random.sample(range(size), min(sample, size)):
        started = time.perf_counter()
        assert unregister(f"sess-{n}")
        timings.append((time.perf_counter() - started) * 1000)
    return _percentile(timings, 0.5)


LOGIN_ROWS = ("register", "heartbeat", "unregister", "healthz")
_PRESESSIONS = 2500  # per client, for the unregister row (more than one round can consume at ~3,000 req/s)


def _preregister(clients: int) -> None:
    """Sessions for the unregister row, registered with the gateway's own script (pipelined, untimed)."""
    from bench.login_load import presession_id, uid_of
    from registry import store

    for client in range(clients):
        calls = [store.register_call(uid_of(client), presession_id(client, n), None, None)
                 for n in range(_PRESESSIONS)]
        store.run_many(calls, store.REGISTER)


def measure_login_path(run_dir: Path, redis_port: int, args: argparse.Namespace) -> dict[str, dict[str, list]]:
    """{row: {"gateway": [LoadResult per round], "floor": [...]}}"""
    import subprocess

    from bench.login_load import run_load
    from bench.rpc import gateway_env
    from core.integrations.redis import get_redis
    from devstack import services as dev_services
    from devstack.processes import ManagedProcess, free_port, http_ok

    token = os.environ["LISTENERS_SERVICE_TOKEN"]
    env = gateway_env(run_dir, redis_port, token)
    subprocess.run([sys.executable, str(BASE_DIR / "manage.py"), "migrate", "--noinput"], env=env, cwd=BASE_DIR,
                   check=True, capture_output=True)
    gateway_port, floor_port = free_port(), free_port()
    gateway = dev_services.asgi_server(gateway_port, run_dir, env, name="gateway").start()
    floor = ManagedProcess(
        "floor", [sys.executable, "-m", "uvicorn", "--factory", "bench.login_floor:floor_app", "--host", "127.0.0.1",
                  "--port", str(floor_port), "--no-access-log", "--lifespan", "off"],
        ready=lambda: http_ok(f"http://127.0.0.1:{floor_port}/readyz"), run_dir=run_dir, env=env, cwd=BASE_DIR,
    ).start()
    targets = {"floor": f"127.0.0.1:{floor_port}", "gateway": f"127.0.0.1:{gateway_port}"}
    results: dict[str, dict[str, list]] = {row: {"floor": [], "gateway": []} for row in LOGIN_ROWS}
    try:
        for _ in range(args.rounds):
            for row in LOGIN_ROWS:
                for name, address in targets.items():
                    if row == "unregister":
                        get_redis().flushall()
                        _preregister(args.clients)
                    results[row][name].append(
                        run_load(address, token, row, clients=args.clients, warmup_s=1.0, seconds=args.seconds)
                    )
                    if row == "register":
                        get_redis().flushall()  # keep the dataset of one run from weighing on the next
    finally:
        gateway.stop()
        floor.stop()
    return results


def print_login_table(results: dict[str, dict[str, list]], args: argparse.Namespace) -> None:
    def median(runs: list) -> Any:
        return sorted(runs, key=lambda r: r.throughput)[len(runs) // 2]

    names = {"register": "REGISTRY.register_user (new session)", "heartbeat": "REGISTRY.heartbeat",
             "unregister": "REGISTRY.unregister_session", "healthz": "GET /healthz"}
    print(f"\nLogin path at {args.clients} clients, median of {args.rounds} rounds of {args.seconds:g} s "
          "(range of gateway req/s in brackets); one uvicorn process each")
    print("| request | floor req/s | gateway req/s | gateway / floor | gateway p50 ms | gateway p99 ms | floor p99 ms "
          "| errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in LOGIN_ROWS:
        floor, gateway = median(results[row]["floor"]), median(results[row]["gateway"])
        spread = sorted(r.throughput for r in results[row]["gateway"])
        errors = sum(r.errors for runs in results[row].values() for r in runs)
        print(f"| {names[row]} | {floor.throughput:,.0f} | {gateway.throughput:,.0f} "
              f"({spread[0]:,.0f}–{spread[-1]:,.0f}) | {gateway.throughput / floor.throughput:.2f} "
              f"| {gateway.percentile(0.5):.1f} | {gateway.percentile(0.99):.1f} | {floor.percentile(0.99):.1f} "
              f"| {errors} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000", help="Comma-separated registry sizes (default 1000,10000).")
    parser.add_argument("--original-sample", type=int, default=100, help="Unregisters timed for the original.")
    parser.add_argument("--rounds", type=int, default=3, help="Login-path rounds (default 3).")
    parser.add_argument("--seconds", type=float, default=5.0, help="Measured seconds per login-path run (default 5).")
    parser.add_argument("--clients", type=int, default=32, help="Concurrent keep-alive clients (default 32).")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--login-only", action="store_true", help="Only the login-path table.")
    only.add_argument("--scaling-only", action="store_true", help="Only the unregister scaling table.")
    parser.add_argument(
        "--dir", default=None,
        help="Where the SQLite file and Valkey live (default: a temp dir on /dev/shm when present, so the numbers "
        "show the registry's work rather than this disk's fsync latency).",
    )
    parser.add_argument("--profile", action="store_true",
                        help="Instead of the tables: where one login-path request's time goes (bench/login_profile.py).")
    args = parser.parse_args()
    if args.profile:
        from bench.login_profile import run as profile

        profile(rows=list(LOGIN_ROWS), calls=3000, top=25)
        return
    sizes = [int(size) for size in args.sizes.split(",")]

    from devstack import services as dev_services
    from devstack.processes import free_port

    shm = Path("/dev/shm")
    run_dir = Path(args.dir or tempfile.mkdtemp(prefix="bench-registry-", dir=shm if shm.is_dir() else None))
    run_dir.mkdir(parents=True, exist_ok=True)
    redis_port = free_port()
    valkey = dev_services.valkey(redis_port, run_dir).start()
    rows, login = [], None
    try:
        _setup(run_dir, redis_port)
        if not args.scaling_only:
            login = measure_login_path(run_dir, redis_port, args)
        if not args.login_only:
            rows = [(size, measure_ours(size), measure_original(size, args.original_sample)) for size in sizes]
    finally:
        valkey.stop()
        if args.dir is None:
            shutil.rmtree(run_dir, ignore_errors=True)

    if login is not None:
        print_login_table(login, args)
    if not rows:
        return
    print("\nunregister_session, per call (ms); Valkey on loopback, no SQL")
    print("| sessions | register p50 | unregister p50 | p99 | mean | SQL stmts/op | Redis cmds/op | SCAN+KEYS "
          "| original p50 |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, ours, original in rows:
        print(
            f"| {size:,} | {ours['register_p50']:.2f} | {ours['p50']:.2f} | {ours['p99']:.2f} | {ours['mean']:.2f} "
            f"| {ours['sql_per_op']:.1f} | {ours['redis_per_op']:.1f} | {ours['scans']} | {original:.1f} |"
        )
    first, last = rows[0][1], rows[-1][1]
    print(f"\nunregister p50 ratio {rows[-1][0]:,} vs {rows[0][0]:,} sessions: {last['p50'] / first['p50']:.2f}x "
          f"(original: {rows[-1][2] / rows[0][2]:.1f}x)")


if __name__ == "__main__":
    main()
