"""``manage.py run_listeners``: the listeners worker (run several for scale-out; they share users through leases)."""
from __future__ import annotations

import gc
import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from prometheus_client import start_http_server

from workflows.config import ListenersConfig
from workflows.profiling import install_from_environment
from workflows.worker import ListenersWorker


class Command(BaseCommand):
    help = "Attach Firestore/Realtime DB listeners for online users and publish their changes as events."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--worker-id", help="unique id of this worker (default: hostname-pid)")
        parser.add_argument("--lease-ttl", type=float, dest="lease_ttl_s",
                            help="lease TTL in seconds (default 15): a crashed worker's users are taken over "
                                 "at once, a paused or cut-off one's after this")
        parser.add_argument("--detach-grace", type=float, dest="detach_grace_s",
                            help="seconds offline before a user's listeners are closed (LISTENERS_DETACH_GRACE_S)")
        parser.add_argument("--stall", type=float, dest="stall_s",
                            help="seconds of silence on a heart-beaten Firestore stream before it is replaced")
        parser.add_argument("--threads", type=int, help="threads running the per-user queues (default 8)")
        parser.add_argument("--targets-per-stream", type=int, dest="targets_per_stream",
                            help="Firestore queries sharing one Listen stream (default 100)")
        parser.add_argument("--max-opening", type=int, dest="max_opening",
                            help="Firestore queries waiting for their first snapshot at once (default 1000)")
        parser.add_argument("--metrics-port", type=int, default=int(getattr(settings, "LISTENERS_METRICS_PORT", 0)),
                            help="serve this worker's Prometheus metrics on this port (default: off)")
        parser.add_argument("--metrics-host", default="127.0.0.1", help="interface for --metrics-port")

    def handle(self, *args: Any, **options: Any) -> None:
        config = ListenersConfig.from_settings(
            worker_id=options["worker_id"], lease_ttl_s=options["lease_ttl_s"],
            detach_grace_s=options["detach_grace_s"], stall_s=options["stall_s"], threads=options["threads"],
            targets_per_stream=options["targets_per_stream"], max_opening=options["max_opening"],
        )
        if options["metrics_port"]:
            # This process alone. On the node of the ASGI processes, set their PROMETHEUS_MULTIPROC_DIR here too and
            # their /metrics includes this worker (core/metrics.py); this port is for a worker on a host of its own.
            start_http_server(options["metrics_port"], addr=options["metrics_host"])
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        install_from_environment()  # LISTENERS_PROFILE: bench/listeners.py --profile
        # Django, gRPC and the SDKs leave ~300,000 objects that live as long as the process: frozen, the collector's
        # full passes skip them (a 1,000-user attach: 0.80 -> 0.33 CPU-s of garbage collection, of the worker's ~5).
        gc.freeze()
        worker = ListenersWorker(config).start()
        self.stdout.write(f"listeners worker {config.worker_id} running (lease TTL {config.lease_ttl_s:g} s)")
        stop.wait()
        worker.stop()
