"""core.memtrace: the soak's tracemalloc snapshots (bench/soak.py --tracemalloc), off unless asked for."""
from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]

_PROCESS = """
import os, signal, time, tracemalloc
from core import memtrace
memtrace.install_from_env()
assert not tracemalloc.is_tracing()  # not before the first signal: startup runs untraced
os.kill(os.getpid(), signal.SIGUSR1)
time.sleep(0.1)  # the handler runs in the main thread at the next bytecode boundary
kept = [bytearray(1000) for _ in range(100)]
os.kill(os.getpid(), signal.SIGUSR1)
time.sleep(0.1)
"""


def _run(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-c", _PROCESS], env={**os.environ, **env}, cwd=BASE_DIR, check=True, timeout=60)


def test_sigusr1_starts_tracing_and_writes_snapshots_when_the_directory_is_set(tmp_path):
    _run({"GATEWAY_TRACEMALLOC_DIR": str(tmp_path)})
    first, second = sorted(tmp_path.glob("*.tracemalloc"))
    assert first.name.endswith("-1.tracemalloc") and second.name.endswith("-2.tracemalloc")
    growth = tracemalloc.Snapshot.load(str(second)).compare_to(tracemalloc.Snapshot.load(str(first)), "filename")
    assert sum(stat.size_diff for stat in growth if stat.traceback[0].filename == "<string>") >= 100_000


def test_nothing_is_traced_without_the_directory(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "GATEWAY_TRACEMALLOC_DIR"}
    result = subprocess.run([sys.executable, "-c", "from core import memtrace; import tracemalloc; "
                             "memtrace.install_from_env(); print(tracemalloc.is_tracing())"],
                            env=env, cwd=BASE_DIR, capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "False"
