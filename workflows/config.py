"""The listeners worker's settings, in one place: Django settings (environment) with ``run_listeners`` overrides."""
from __future__ import annotations

import dataclasses
import os
import socket
from dataclasses import dataclass
from typing import Any

from django.conf import settings


@dataclass(frozen=True)
class ListenersConfig:
    worker_id: str
    lease_ttl_s: float = 15.0  # a worker that stops renewing loses its users after this (a crashed one: at once)
    detach_grace_s: float = 60.0  # offline this long before detaching (a quick reconnect re-reads nothing)
    stall_s: float = 120.0  # a heart-beaten Firestore stream silent this long is replaced
    workflow_enabled: bool = True
    streams_per_connection: int = 90  # Firestore serves ~100 concurrent streams per connection
    # run_listeners flags only (bench/listeners.py varies them):
    targets_per_stream: int = 100  # query listeners (any users') sharing one Listen stream (firestore_streams.py)
    max_opening: int = 1000  # query listeners waiting for their first snapshot at once
    threads: int = 8  # per-user queues run on this many threads
    workflow_cache_jobs: int = 5000  # per user
    sync_quiet_s: float = 0.1  # a burst of changes ends after this pause (debounce) ...
    sync_max_delay_s: float = 1.0  # ... or this long after its first change: then one sync is published
    members_refresh_s: float = 5.0  # re-read presence members (chat sockets that expired without a leave event)
    state_flush_s: float = 1.0  # ListenerState writes are batched this often
    liveness_poll_s: float = 0.2  # the peers' subscriptions are checked this often (two round trips)
    last_event_write_s: float = 5.0  # last_event_at is written at most this often per user

    @property
    def lease_ttl_ms(self) -> int:
        """The TTL as the lease scripts take it (ownership.py)."""
        return int(self.lease_ttl_s * 1000)

    @property
    def tick_s(self) -> float:
        """The maintainer's period: heartbeat, lease renewal, claims, watchdog. A lease is renewed many times per
        TTL, and a worker whose leases were taken (peers found it dead) stops within a tick."""
        return min(1.0, self.lease_ttl_s / 6)

    @property
    def liveness_grace_s(self) -> float:
        """How long a registered peer may hold no subscription before it is taken for dead: covers its subscriber
        reconnecting (0.1 s after a drop, plus the connection), and stays a small part of the lease TTL."""
        return min(2.0, max(0.5, self.lease_ttl_s / 6))

    @property
    def claim_scan_s(self) -> float:
        """How often the claims read every online user (leases.py); between, only the users that may have changed."""
        return 10 * self.tick_s

    @property
    def claim_delay_s(self) -> float:
        """How long a user stays unowned before a worker other than its preferred one claims it."""
        return 3 * self.tick_s

    @classmethod
    def from_settings(cls, **overrides: Any) -> "ListenersConfig":
        values: dict[str, Any] = {
            "worker_id": getattr(settings, "LISTENERS_WORKER_ID", "") or f"{socket.gethostname()}-{os.getpid()}",
            "lease_ttl_s": float(getattr(settings, "LISTENERS_LEASE_TTL_S", cls.lease_ttl_s)),
            "detach_grace_s": float(settings.LISTENERS_DETACH_GRACE_S),
            "stall_s": float(getattr(settings, "LISTENERS_STALL_S", cls.stall_s)),
            "workflow_enabled": bool(settings.WORKFLOW_LISTENER_ENABLED),
            "streams_per_connection": int(
                getattr(settings, "LISTENERS_STREAMS_PER_CONNECTION", cls.streams_per_connection)
            ),
            "threads": int(getattr(settings, "LISTENERS_WORKER_THREADS", cls.threads)),
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise TypeError(f"unknown listeners setting(s): {sorted(unknown)}")
        return cls(**values)
