"""The listeners worker's claim pass (workflows/leases.py) on a fleet: what one maintainer tick costs a worker.

A real Valkey holds a fleet of online users (presence) and their leases, spread over M live workers; this process
plays one of them, worker ``w0``, with the real ``LeaseKeeper`` over stand-ins for its users and peers (no
listeners: only the claims' reads are measured). It times a scan of every online user (what every tick did; now
every ``claim_scan_s`` and when a peer left) against a tick between scans, with and without announcements.

    .venv/bin/python bench/listeners_claims.py                           # 20,000 online users, 20 workers
    .venv/bin/python bench/listeners_claims.py --users 1000 --workers 1
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from devstack import services  # noqa: E402
from devstack.processes import free_port  # noqa: E402


def per_tick(run: Callable[[], None], rounds: int) -> tuple[float, float]:
    """CPU and wall milliseconds per call."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(rounds):
        run()
    return (time.process_time() - cpu) * 1000 / rounds, (time.perf_counter() - wall) * 1000 / rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20_000, help="online users in the fleet")
    parser.add_argument("--workers", type=int, default=20, help="live workers holding them, round-robin")
    parser.add_argument("--rounds", type=int, default=20)
    options = parser.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="bench-claims-"))
    os.environ.update({"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "GATEWAY_MODE": "LOCAL",
                       "DATABASE_URL": f"sqlite:///{run_dir / 'db.sqlite3'}", "LISTENERS_TTL_SECONDS": "3600"})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "listeners_project.settings")
    import django

    django.setup()
    valkey = services.valkey(int(os.environ["REDIS_URL"].rsplit(":", 1)[1].split("/")[0]), run_dir).start()
    try:
        from core.integrations.redis import get_redis
        from realtime import presence
        from workflows import ownership
        from workflows.config import ListenersConfig
        from workflows.leases import LeaseKeeper

        uids = [f"u{number}" for number in range(options.users)]
        workers = [f"w{number}" for number in range(options.workers)]
        pipe = get_redis().pipeline(transaction=False)
        for number, uid in enumerate(uids):
            pipe.set(ownership.lease_key(uid), workers[number % len(workers)], px=3_600_000)
        pipe.execute()
        for uid in uids:
            presence.join(uid, presence.session_member(f"s-{uid}"))
        mine = {uid for number, uid in enumerate(uids) if number % len(workers) == 0}

        class Peers:  # every worker live (what liveness.py would say)
            live_workers = workers

            def is_preferred(self, uid: str) -> bool:
                return ownership.preferred_worker(uid, workers) == "w0"

        class Users:  # w0's users (users.py OwnedUsers): attached, none leaving
            def owned_uids(self) -> list[str]:
                return list(mine)

            def owns(self, uid: str) -> bool:
                return uid in mine

            def is_detaching(self, uid: str) -> bool:
                return False

            def schedule_reconcile(self, uid: str) -> None:
                pass

        keeper, users = LeaseKeeper(ListenersConfig(worker_id="w0"), Peers()), Users()
        others = [uid for uid in uids if uid not in mine][:10]

        def announced_tick() -> None:
            for uid in others:
                keeper.announced(uid)
            keeper.claim_unowned(users, time.monotonic())

        rows = [("a scan of every online user (each tick before; now every claim_scan_s, and when a peer left)",
                 per_tick(lambda: keeper.claim_unowned(users, time.monotonic(), full=True), options.rounds))]
        keeper._next_scan_at = time.monotonic() + 3600  # the ticks between two scans
        rows.append(("a tick between scans, nothing announced",
                     per_tick(lambda: keeper.claim_unowned(users, time.monotonic()), options.rounds)))
        rows.append((f"a tick between scans, {len(others)} users of other workers announced",
                     per_tick(announced_tick, options.rounds)))
    finally:
        valkey.stop()
    print(f"\nClaim pass of one worker: {options.users} online users, {options.workers} live workers, this one "
          f"owning {len(mine)} ({os.cpu_count()} cores, Valkey on loopback)")
    print("| pass | CPU per tick | wall per tick |")
    print("|---|---:|---:|")
    for label, (cpu, wall) in rows:
        print(f"| {label} | {cpu:.2f} ms | {wall:.2f} ms |")


if __name__ == "__main__":
    main()
