"""A buffer's writer, run once a second on a daemon thread of the process, and on demand (core/activity.py,
core/provenance.py): hot paths only append in memory and Redis sees one pipelined round trip a second.

``flush()`` runs one write at a time, so it returns only once everything buffered before the call is written (the
tests' per-test wipe relies on it). The thread starts on first use and again in a forked child (threads don't survive
a fork), and outlives a bug in one write: nothing would restart it.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Callable

import structlog

log = structlog.get_logger(__name__)


class PeriodicFlusher:
    def __init__(self, name: str, write: Callable[[], None], interval_s: float = 1.0) -> None:
        self._name = name
        self._write = write
        self._interval_s = interval_s
        self._flush_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._pid: int | None = None  # the process whose thread runs

    def ensure_running(self) -> None:
        """Cheap on every call: one comparison once the thread of this process runs."""
        if self._pid == os.getpid():
            return
        with self._start_lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._flush_forever, name=f"{self._name}-flush", daemon=True).start()

    def flush(self) -> None:
        with self._flush_lock:
            self._write()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self._interval_s)
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - see the module docstring
                log.exception("periodic_flush_crashed", flusher=self._name)
