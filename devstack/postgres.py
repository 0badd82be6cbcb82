"""A throw-away PostgreSQL server for the test suite's second pass (``pytest --postgres``; .ci/run runs it).

Debian's ``postgresql`` package (its binaries under /usr/lib/postgresql/<version>/bin) in a fresh temp directory on a
free loopback port, trust auth for a superuser ``gateway`` (pytest-django creates and drops its test database).
PostgreSQL refuses to run as root: as root, the cluster directory is given to the ``postgres`` system user the
package creates and both initdb and the server run as that user (``setpriv``, which execs without forking).
Durability is off (fsync, full page writes): the data lives as long as the test session.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from .processes import ManagedProcess, port_open

USER = "gateway"
_BIN_GLOB = "/usr/lib/postgresql/*/bin"


class PostgresMissing(RuntimeError):
    """Debian's postgresql server is not installed (apt-get install -y postgresql)."""


def bin_dir() -> Path:
    found = sorted(glob.glob(_BIN_GLOB), key=lambda path: int(Path(path).parent.name.split(".")[0]))
    if not found or not (Path(found[-1]) / "initdb").exists():
        raise PostgresMissing("PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install -y postgresql)")
    return Path(found[-1])


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return [shutil.which("setpriv") or "setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups", "--", *argv]


def postgres_server(port: int, run_dir: Path) -> tuple[ManagedProcess, str]:
    """A started-on-demand server (call ``.start()``) and its DATABASE_URL."""
    binaries = bin_dir()
    data_dir = Path(tempfile.mkdtemp(prefix="gateway-pg-"))  # not under run_dir: that one is 0700, root's
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(data_dir, account.pw_uid, account.pw_gid)
    subprocess.run(
        _as_server_user([str(binaries / "initdb"), "-D", str(data_dir), "-U", USER, "-A", "trust", "-E", "UTF8",
                         "--no-sync"]),
        check=True, capture_output=True,
    )
    argv = _as_server_user([
        str(binaries / "postgres"), "-D", str(data_dir), "-p", str(port), "-k", str(data_dir),
        "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off",
        "-c", "synchronous_commit=off", "-c", "max_connections=300",
    ])
    process = ManagedProcess("postgres", argv, ready=lambda: port_open(port), run_dir=run_dir)
    return process, f"postgres://{USER}@127.0.0.1:{port}/postgres"


def remove_data(process: ManagedProcess) -> None:
    data_dir = process.argv[process.argv.index("-D") + 1]
    shutil.rmtree(data_dir, ignore_errors=True)
