"""Session registry benchmark: unregister stays O(1) per session as the registry grows (no keyspace scans).

    .venv/bin/python bench/registry.py [--sizes 1000,10000] [--original-sample 100]

One run starts a private Valkey on a free loopback port and a fresh SQLite file database in a temp dir, then for each
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
    from registry.models import Session

    client = get_redis()
    client.flushall()
    Session.objects.all().delete()
    session_ids = [f"sess-{n}" for n in range(size)]
    register_ms = []
    for n, session_id in enumerate(session_ids):
        started = time.perf_counter()
        services.register_session(user_id=f"user-{n // 2}", session_id=session_id, backend_route="bench")
        register_ms.append((time.perf_counter() - started) * 1000)

    random.shuffle(session_ids)
    client.config_resetstat()
    unregister_ms = []
    statements = 0

    def count_statements(execute, sql, params, many, context):  # noqa: ANN001, ANN202 - Django's wrapper signature
        nonlocal statements
        statements += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count_statements):
        for session_id in session_ids:
            started = time.perf_counter()
            assert services.unregister_session(session_id=session_id) is True
            unregister_ms.append((time.perf_counter() - started) * 1000)
    calls = _command_calls(client)
    calls.pop("config|resetstat", None)
    calls.pop("info", None)
    scans = sum(count for name, count in calls.items() if name.split("|")[0] in {"scan", "keys"})
    if scans:
        raise SystemExit(f"unregister ran {scans} SCAN/KEYS commands")
    assert presence.count_online() == 0 and not Session.objects.filter(status="online").exists()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000", help="Comma-separated registry sizes (default 1000,10000).")
    parser.add_argument("--original-sample", type=int, default=100, help="Unregisters timed for the original.")
    parser.add_argument(
        "--dir", default=None,
        help="Where the SQLite file and Valkey live (default: a temp dir on /dev/shm when present, so the numbers "
        "show the registry's work rather than this disk's fsync latency).",
    )
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]

    from devstack import services as dev_services
    from devstack.processes import free_port

    shm = Path("/dev/shm")
    run_dir = Path(args.dir or tempfile.mkdtemp(prefix="bench-registry-", dir=shm if shm.is_dir() else None))
    run_dir.mkdir(parents=True, exist_ok=True)
    redis_port = free_port()
    valkey = dev_services.valkey(redis_port, run_dir).start()
    try:
        _setup(run_dir, redis_port)
        rows = [(size, measure_ours(size), measure_original(size, args.original_sample)) for size in sizes]
    finally:
        valkey.stop()
        if args.dir is None:
            shutil.rmtree(run_dir, ignore_errors=True)

    print(f"\nunregister_session, per call (ms); SQLite file DB in {run_dir}, Valkey on loopback")
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
