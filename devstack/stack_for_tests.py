"""The real services a test session runs against, started before Django reads its settings.

Valkey, the official Firestore emulator and the Realtime DB stand-in run as child processes on free loopback ports,
in a private run directory (so concurrent test sessions never touch each other's services). Their addresses are
exported as the same environment variables production uses, so settings and integrations take the ordinary code path.
"""
from __future__ import annotations

import os
import secrets
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from . import services
from .processes import ManagedProcess, free_port

PROJECT_ID = "demo-gateway-test"


@dataclass
class ServiceStack:
    run_dir: Path
    redis_port: int
    firestore_port: int
    rtdb_port: int
    service_token: str
    postgres: bool = False  # pytest --postgres: DATABASE_URL points at a throw-away PostgreSQL (devstack/postgres.py)
    database_url: str = ""
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {
            "GATEWAY_MODE": "LOCAL",
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{self.firestore_port}",
            "FIREBASE_DATABASE_EMULATOR_HOST": f"127.0.0.1:{self.rtdb_port}",
            "FIREBASE_PROJECT_ID": PROJECT_ID,
            "LISTENERS_SERVICE_TOKEN": self.service_token,
            "CHROMA_PATH": str(self.run_dir / "chroma"),
            "DATABASE_URL": self.database_url or f"sqlite:///{self.run_dir / 'gateway.sqlite3'}",
            "NO_GCE_CHECK": "true",
            "ANONYMIZED_TELEMETRY": "False",
            "HF_HUB_OFFLINE": "1",
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        }

    def start(self) -> "ServiceStack":
        self.processes["valkey"] = services.valkey(self.redis_port, self.run_dir).start()
        self.processes["firestore"] = services.firestore_emulator(self.firestore_port, self.run_dir).start()
        self.processes["rtdb"] = services.rtdb_standin(self.rtdb_port, self.run_dir).start()
        if self.postgres:
            from .postgres import postgres_server

            process, self.database_url = postgres_server(free_port(), self.run_dir)
            self.processes["postgres"] = process.start()
        os.environ.update(self.env)
        return self

    def restart(self, name: str) -> None:
        self.processes[name].start()

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()
        if "postgres" in self.processes:
            from .postgres import remove_data

            remove_data(self.processes["postgres"])

    def wipe(self) -> None:
        """Forget all data between tests: Valkey FLUSHALL, Firestore and RTDB deletes."""
        import redis

        redis.Redis(port=self.redis_port).flushall()
        _http_delete(
            f"http://127.0.0.1:{self.firestore_port}/emulator/v1/projects/{PROJECT_ID}/databases/(default)/documents"
        )
        _http_delete(f"http://127.0.0.1:{self.rtdb_port}/.json?ns={PROJECT_ID}")


def _http_delete(url: str) -> None:
    request = urllib.request.Request(url, method="DELETE", headers={"Authorization": "Bearer owner"})
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - loopback URL we built
        pass


def start_service_stack(*, postgres: bool = False) -> ServiceStack:
    run_dir = Path(tempfile.mkdtemp(prefix="gateway-test-"))
    stack = ServiceStack(
        run_dir=run_dir, redis_port=free_port(), firestore_port=free_port(), rtdb_port=free_port(),
        service_token=secrets.token_urlsafe(24), postgres=postgres,
    )
    try:
        return stack.start()
    except BaseException:
        stack.stop()
        raise
