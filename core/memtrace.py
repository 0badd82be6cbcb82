"""Memory diagnosis for soak runs (bench/soak.py --tracemalloc): allocation snapshots of a running process on demand.

With ``GATEWAY_TRACEMALLOC_DIR`` set, every Django process (the ASGI server, the listeners worker) answers SIGUSR1 by
writing a tracemalloc snapshot to ``<dir>/<pid>-<n>.tracemalloc``; the first signal also starts tracing, so only what
is allocated from then on (after the soak's warm-up) is traced, and startup runs at full speed. Comparing the first
snapshot with a later one gives the allocation sites that grew in between. Unset (always, outside a soak run) this
does nothing: tracing slows every allocation down.
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
    counter = itertools.count(1)

    def snapshot(_signum: int, _frame: object) -> None:
        if not tracemalloc.is_tracing():
            tracemalloc.start(_FRAMES)
        path = Path(directory) / f"{os.getpid()}-{next(counter)}.tracemalloc"
        tracemalloc.take_snapshot().dump(str(path) + ".part")
        os.replace(str(path) + ".part", path)  # the soak reads only complete snapshots

    signal.signal(signal.SIGUSR1, snapshot)
