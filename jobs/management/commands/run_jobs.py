"""``manage.py run_jobs``: run queued long jobs (run several for more throughput; they share the Redis queue)."""
from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from jobs.runner import DEFAULT_LEASE_TTL_S, DEFAULT_THREADS, JobRunner


class Command(BaseCommand):
    help = (
        "Run long jobs (e.g. Chroma migrations) started through the job API. A job whose runner dies is resumed from "
        "its checkpoint or marked error by any runner once its lease expires."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--worker-id", help="unique id of this runner (default: hostname-pid)")
        parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                            help=f"jobs run at once by this process (default {DEFAULT_THREADS})")
        parser.add_argument("--lease-ttl", type=float, default=DEFAULT_LEASE_TTL_S, dest="lease_ttl_s",
                            help="seconds without a lease renewal before another runner recovers a job "
                                 f"(default {DEFAULT_LEASE_TTL_S:g})")

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        runner = JobRunner(
            worker_id=options["worker_id"], threads=options["threads"], lease_ttl_s=options["lease_ttl_s"]
        ).start()
        self.stdout.write(f"jobs runner {runner.worker_id} running ({runner.threads} threads, "
                          f"lease TTL {runner.lease_ttl_s:g} s)")
        self.stdout.flush()
        stop.wait()
        runner.stop()
