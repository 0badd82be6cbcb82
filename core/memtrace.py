"""Memory diagnosis for soak runs (bench/soak.py --tracemalloc): allocation snapshots of a running process on demand.

With ``GATEWAY_TRACEMALLOC_DIR`` set, every Django process (the ASGI server, the listeners worker) starts tracemalloc
when it starts and, on each SIGUSR1, writes a snapshot to ``<dir>/<pid>-<n>.tracemalloc``; the soak compares two of
them to find the allocation sites that grow. Unset (always, outside a soak run) this does nothing: tracemalloc slows
every allocation down.
"""
from __future__ import annotations

import itertools
import os
import signal
import threading
import tracemalloc
from pathlib import Path

ENV = "GATEWAY_TRACEMALLOC_DIR"
_FRAMES = 8  # enough to see which of our functions an allocation inside a library comes from


def install_from_env() -> None:
    directory = os.environ.get(ENV)
    if not directory or threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be installed from the main thread
    tracemalloc.start(_FRAMES)
    counter = itertools.count(1)

    def snapshot(_signum: int, _frame: object) -> None:
        path = Path(directory) / f"{os.getpid()}-{next(counter)}.tracemalloc"
        tracemalloc.take_snapshot().dump(str(path) + ".part")
        os.replace(str(path) + ".part", path)  # the soak reads only complete snapshots

    signal.signal(signal.SIGUSR1, snapshot)
