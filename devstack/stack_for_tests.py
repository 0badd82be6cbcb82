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
from .valkey_cluster import ValkeyCluster, WholeClusterView, start_cluster

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
    # --redis-cluster: a local 3-master Valkey Cluster instead of the single node; redis_port is then its first node.
    cluster_mode: bool = False
    redis_cluster: ValkeyCluster | None = None
    _cluster_view: WholeClusterView | None = field(default=None, repr=False)

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def env(self) -> dict[str, str]:
        return {
            "GATEWAY_MODE": "LOCAL",
            "REDIS_URL": self.redis_url,
            "LISTENERS_REDIS_CLUSTER": "true" if self.cluster_mode else "false",
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
        if self.cluster_mode:
            self.redis_cluster = start_cluster(self.run_dir)
            self.redis_port = self.redis_cluster.ports[0]
            self.processes["valkey"] = self.redis_cluster.as_one_process()  # type: ignore[assignment]
        else:
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
            process.stop()  # "valkey" is the whole cluster in cluster mode
        if "postgres" in self.processes:
            from .postgres import remove_data

            remove_data(self.processes["postgres"])

    def redis_client(self):  # noqa: ANN201 - redis.Redis or redis.cluster.RedisCluster
        """A client of the session's Redis for test assertions: cluster-aware on a cluster."""
        import redis

        if self.cluster_mode:
            # One for the session: discovering the topology costs ~60 ms, and it survives node restarts (same ports).
            if self._cluster_view is None:
                self._cluster_view = WholeClusterView(host="127.0.0.1", port=self.redis_port)
            return self._cluster_view
        return redis.Redis(port=self.redis_port)

    def wipe(self) -> None:
        """Forget all data between tests: Valkey FLUSHALL (every node of a cluster), Firestore and RTDB deletes."""
        import redis

        if self.redis_cluster is not None:
            self.redis_cluster.flushall()
        else:
            redis.Redis(port=self.redis_port).flushall()
        _http_delete(
            f"http://127.0.0.1:{self.firestore_port}/emulator/v1/projects/{PROJECT_ID}/databases/(default)/documents"
        )
        _http_delete(f"http://127.0.0.1:{self.rtdb_port}/.json?ns={PROJECT_ID}")


def _http_delete(url: str) -> None:
    request = urllib.request.Request(url, method="DELETE", headers={"Authorization": "Bearer owner"})
    # Generous: on a crowded machine (load average 28 on 2 cores) the emulator's DELETE took over 10 s.
    with urllib.request.urlopen(request, timeout=30):  # noqa: S310 - loopback URL we built
        pass


def start_service_stack(*, postgres: bool = False, redis_cluster: bool = False) -> ServiceStack:
    run_dir = Path(tempfile.mkdtemp(prefix="gateway-test-"))
    stack = ServiceStack(
        run_dir=run_dir, redis_port=free_port(), firestore_port=free_port(), rtdb_port=free_port(),
        service_token=secrets.token_urlsafe(24), postgres=postgres, cluster_mode=redis_cluster,
    )
    try:
        return stack.start()
    except BaseException:
        stack.stop()
        raise
