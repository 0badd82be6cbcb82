"""A CPU profile of every thread of the worker, for ``bench/listeners.py --profile`` (a development tool).

cProfile profiles only the thread that enables it, and the worker's work is spread over the event loop, the
per-user queues, the maintainer and the loop's executor. With ``LISTENERS_PROFILE`` set to a file name,
``run_listeners`` installs a hook (``threading.setprofile``) that enables one profiler in each thread as it starts;
SIGUSR1 clears them all (the bench sends it right before the attach) and SIGUSR2 writes their merged stats to that
file (right after it). py-spy is not installed here and Python 3.11 has no ``-X perf``.
"""
from __future__ import annotations

import cProfile
import os
import pstats
import signal
import threading
import time
from typing import Any

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()


def _start_in_this_thread(frame: Any, event: str, arg: Any) -> None:
    """The first profiling event of a new thread: replace this hook by a profiler of the thread's own."""
    profile = cProfile.Profile(time.thread_time)  # CPU time: waiting (the loop's poll, a queue) costs nothing
    with _lock:
        _profiles.append(profile)
    profile.enable()


def _clear(*_: Any) -> None:
    with _lock:
        for profile in _profiles:
            profile.clear()


class _Snapshot:
    """What ``pstats.Stats`` reads from a profiler, without its ``create_stats()``: that one stops the profiler and
    closes the calls still running with the timer of the calling thread (CPU time of the wrong thread)."""

    def __init__(self, profile: cProfile.Profile) -> None:
        profile.snapshot_stats()  # the calls finished so far; the thread's profiler keeps running
        self.stats = profile.stats

    def create_stats(self) -> None:
        pass


def _write(path: str) -> None:
    with _lock:
        snapshots = [_Snapshot(profile) for profile in _profiles]
    snapshots = [snapshot for snapshot in snapshots if snapshot.stats]  # pstats refuses an empty one (idle thread)
    if not snapshots:
        return
    pstats.Stats(*snapshots).dump_stats(path + ".tmp")
    os.replace(path + ".tmp", path)  # the bench waits for the file: never a half-written one


def install_from_environment() -> None:
    """Profile every thread started from now on when ``LISTENERS_PROFILE`` names a file (main thread only)."""
    path = os.environ.get("LISTENERS_PROFILE")
    if not path:
        return
    threading.setprofile(_start_in_this_thread)
    signal.signal(signal.SIGUSR1, _clear)
    signal.signal(signal.SIGUSR2, lambda *_: _write(path))
