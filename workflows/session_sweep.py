"""Expired registry sessions are swept by the listeners worker: it always runs, in the dev stack and in production,
and sweeping is safe on every worker at once (registry/services.py). It runs on the database (state) thread."""
from __future__ import annotations

import time

from django.conf import settings
from django.db import reset_queries

from registry.services import sweep_expired_sessions


class SessionSweep:
    """Sweeps at most every sixth of the sessions' TTL (``LISTENERS_TTL_SECONDS``), and at least a second apart."""

    def __init__(self) -> None:
        self._next_at = 0.0

    def run_if_due(self) -> None:
        """Raises what the sweep raises (django.db.Error, redis.RedisError): the state thread logs it."""
        if time.monotonic() >= self._next_at:
            self._next_at = time.monotonic() + max(1.0, settings.LISTENERS_TTL_SECONDS / 6)
            try:
                sweep_expired_sessions()
            finally:
                # What Django's request_started does, which a worker never sends: with DEBUG on, this thread's
                # connections kept their last 9,000 queries, the history INSERTs among them (~64 KB of SQL per 500
                # ended sessions: tens of MB over an hour of logins in LOCAL). Also clears the state mirror's.
                reset_queries()
