"""Per-user serial execution on a small shared thread pool.

Everything that touches one user's listeners (attach, detach, snapshots, timers, staff commands) is a task queued
under that uid and run one at a time, in order. That is what makes attach/detach atomic per user without holding
a lock across I/O, and it keeps the SDK callbacks short: they only queue. Idle users cost nothing (no entry).
"""
from __future__ import annotations

import collections
import queue
import threading
from typing import Any, Callable

import structlog

log = structlog.get_logger(__name__)

Task = Callable[[], Any]
_BATCH = 32  # tasks of one user run back to back before other users get the thread


class KeyedSerialExecutor:
    def __init__(self, threads: int, name: str = "listeners-actor") -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, collections.deque[Task]] = {}  # key -> queued tasks; present while scheduled
        self._ready: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._idle = threading.Condition(self._lock)
        # Daemon threads: they never hold the process open.
        self._threads = [threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True) for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, key: str, task: Task) -> None:
        with self._lock:
            tasks = self._pending.get(key)
            if tasks is not None:
                tasks.append(task)
                return
            self._pending[key] = collections.deque([task])
        self._ready.put(key)

    def _run(self) -> None:
        while True:
            key = self._ready.get()
            if key is None:
                return
            for _ in range(_BATCH):
                with self._lock:
                    tasks = self._pending[key]
                    if not tasks:
                        del self._pending[key]
                        self._idle.notify_all()
                        break
                    task = tasks.popleft()
                try:
                    task()
                except Exception:  # one failed task must not stop the user's queue or the thread
                    log.exception("listener_task_failed", uid=key)
            else:
                self._ready.put(key)  # still busy: go to the back of the line so other users get a turn

    def wait_idle(self, timeout: float) -> bool:
        """True once nothing is queued or running (shutdown and tests)."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._pending, timeout)

    def stop(self) -> None:
        for _ in self._threads:
            self._ready.put(None)
        for thread in self._threads:
            thread.join(timeout=10)
