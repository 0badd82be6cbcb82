"""RPC gateway benchmark: no-op RPC throughput and latency against the Python floor, under uvicorn and daphne.

    .venv/bin/python bench/rpc.py [--rounds 3] [--seconds 5] [--clients 32]

One run starts everything it needs on free loopback ports and stops it at the end: a Valkey, a bare Starlette echo
endpoint (the floor: what any Python ASGI service costs on this machine) under uvicorn and daphne, and the gateway
under uvicorn and daphne. A separate load process drives each target with N keep-alive connections, each sending its
next request as soon as the previous answer arrives (closed loop), and records every request's latency. Targets run
interleaved, round after round, and the report gives the median round with the range, because the machine is
shared and its load changes from one minute to the next.

It prints:

* throughput and p50/p99 for the floor, for ``REGISTRY.ping`` without an idempotency key, and with a fresh key per
  call (every call claims and stores a key in Valkey), at 32 clients (saturation) and at 4 (a light load);
* the idempotency layer's own cost: ``fingerprint`` + ``claim`` + ``store`` called directly against the same Valkey,
  sequentially, so the number is the layer and not queueing behind 32 clients;
* the same two gateway targets (uvicorn, 32 clients) on a local 3-master Valkey Cluster (LISTENERS_REDIS_CLUSTER=true),
  interleaved with the others, so the cost of the cluster hop is read off the same run (``--no-cluster`` skips it).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from bench.login_load import LoadResult, run_load  # noqa: E402 - the one HTTP load client of the benches

# --- the floor: a bare Starlette endpoint, same request and response shape as /rpc -----------------------------------
def floor_app():  # uvicorn --factory bench.rpc:floor_app
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def rpc(request: Request) -> Response:
        envelope = json.loads(await request.body())
        body = json.dumps(
            {"ok": True, "data": {"echo": envelope.get("method")}, "trace_id": secrets.token_hex(16)}, separators=(",", ":")
        )
        return Response(body, media_type="application/json")

    async def readyz(request: Request) -> Response:
        return Response(b'{"ok":true}', media_type="application/json")

    return Starlette(routes=[Route("/rpc", rpc, methods=["POST"]), Route("/readyz", readyz)])


def __getattr__(name: str):  # daphne loads an application object, not a factory: bench.rpc:floor_application
    if name == "floor_application":
        return floor_app()
    raise AttributeError(name)


# --- the services --------------------------------------------------------------------------------------------------
def gateway_env(run_dir: Path, redis_port: int, token: str, cluster: bool = False) -> dict[str, str]:
    """What a gateway process needs (mirrors devstack/stack_for_tests.py); Firestore and RTDB are not touched by ping."""
    return {
        "LISTENERS_REDIS_CLUSTER": "true" if cluster else "false",
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "listeners_project.settings",
        "GATEWAY_MODE": "LOCAL",
        "DJANGO_DEBUG": "false",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "LISTENERS_SERVICE_TOKEN": token,
        "DATABASE_URL": f"sqlite:///{run_dir / 'gateway.sqlite3'}",
        "CHROMA_PATH": str(run_dir / "chroma"),
        "WORKFLOW_LISTENER_ENABLED": "false",
        "NO_GCE_CHECK": "true",
        "ANONYMIZED_TELEMETRY": "False",
        "HF_HUB_OFFLINE": "1",
        "LOG_LEVEL": "WARNING",
    }


def floor_server(port: int, run_dir: Path, server: str):
    from devstack.processes import ManagedProcess, http_ok

    if server == "daphne":
        argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "bench.rpc:floor_application"]
    else:
        argv = [
            sys.executable, "-m", "uvicorn", "--factory", "bench.rpc:floor_app", "--host", "127.0.0.1",
            "--port", str(port), "--no-access-log", "--lifespan", "off",
        ]
    return ManagedProcess(f"floor-{server}", argv, ready=lambda: http_ok(f"http://127.0.0.1:{port}/readyz"),
                          run_dir=run_dir, cwd=BASE_DIR)


def measure_idempotency_layer(env: dict[str, str], calls: int) -> tuple[float, float]:
    """fingerprint + claim + store against Valkey, sequentially, in this process: (p50, p99) in ms."""
    os.environ.update(env)
    import django
    import uvloop

    django.setup()
    from rpc import idempotency

    body = b'{"ok":true,"data":{"pong":true},"trace_id":"0123456789abcdef0123456789abcdef"}'

    async def measure() -> list[float]:
        samples = []
        run_id = secrets.token_hex(4)  # fresh keys in every round
        for number in range(calls + 200):
            started = time.perf_counter()
            fingerprint = idempotency.fingerprint("REGISTRY.ping", [], {})
            claim = await idempotency.claim(scope="bench", key=f"layer-{run_id}-{number}", fp=fingerprint, deadline_ms=15000)
            assert isinstance(claim, idempotency.Claim)
            await claim.store(200, body)
            if number >= 200:  # the first calls load the Lua scripts and open connections
                samples.append((time.perf_counter() - started) * 1000)
        return samples

    samples = sorted(uvloop.run(measure()))
    return statistics.median(samples), samples[int(0.99 * len(samples))]


@dataclass
class Target:
    name: str
    server: str
    address: str
    clients: int
    mode: str = "ping"  # bench/login_load.py: the same REGISTRY.ping, or ping-fresh (a new idempotency key each)
    results: list[LoadResult] = field(default_factory=list)

    def median(self, measure) -> float:
        return statistics.median(measure(result) for result in self.results)

    def spread(self, measure, digits: int = 0) -> str:
        values = [measure(result) for result in self.results]
        middle = statistics.median(values)
        if len(values) == 1:
            return f"{middle:,.{digits}f}"
        return f"{middle:,.{digits}f} ({min(values):,.{digits}f}–{max(values):,.{digits}f})"


def throughput(result: LoadResult) -> float:
    return result.throughput


def p50(result: LoadResult) -> float:
    return result.percentile(0.5)


def p99(result: LoadResult) -> float:
    return result.percentile(0.99)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per target and round")
    parser.add_argument("--rounds", type=int, default=3, help="targets run interleaved, round after round")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--light-clients", type=int, default=4, help="a load that does not saturate the server")
    parser.add_argument("--servers", default="uvicorn,daphne")
    parser.add_argument("--layer-calls", type=int, default=5000)
    parser.add_argument("--no-cluster", action="store_true", help="skip the gateway on a 3-master Valkey Cluster")
    options = parser.parse_args()

    from devstack import services
    from devstack.processes import free_port
    from devstack.valkey_cluster import start_cluster

    run_dir = Path(tempfile.mkdtemp(prefix="bench-rpc-"))
    token = secrets.token_urlsafe(24)
    started = []
    targets: list[Target] = []
    layer: list[tuple[float, float]] = []
    try:
        valkey = services.valkey(free_port(), run_dir).start()
        started.append(valkey)
        redis_port = int(valkey.argv[valkey.argv.index("--port") + 1])
        env = gateway_env(run_dir, redis_port, token)
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], env=env, cwd=BASE_DIR, check=True,
                       capture_output=True)

        # Every server runs for the whole benchmark (idle ones cost nothing) so targets can be interleaved: noise
        # from other work on the machine then spreads over all of them instead of biasing one.
        servers = [name.strip() for name in options.servers.split(",") if name.strip()]
        for server in servers:
            port = free_port()
            started.append(floor_server(port, run_dir, server).start())
            targets.append(Target("floor: Starlette echo", server, f"127.0.0.1:{port}", options.clients))
        for server in servers:
            port = free_port()
            started.append(services.asgi_server(port, run_dir, env, server=server, name=f"gateway-{server}").start())
            address = f"127.0.0.1:{port}"
            targets.append(Target("REGISTRY.ping", server, address, options.clients))
            targets.append(Target("REGISTRY.ping + idempotency_key", server, address, options.clients, mode="ping-fresh"))
            if server == servers[0]:
                targets.append(Target("REGISTRY.ping", server, address, options.light_clients))
                targets.append(Target("REGISTRY.ping + idempotency_key", server, address, options.light_clients,
                                      mode="ping-fresh"))
        if not options.no_cluster:
            cluster = start_cluster(run_dir)
            started.append(cluster.as_one_process())
            cluster_env = gateway_env(run_dir, cluster.ports[0], token, cluster=True)
            port = free_port()
            started.append(services.asgi_server(port, run_dir, cluster_env, name="gateway-cluster").start())
            targets.append(Target("REGISTRY.ping, cluster", "uvicorn", f"127.0.0.1:{port}", options.clients))
            targets.append(Target("REGISTRY.ping + idempotency_key, cluster", "uvicorn", f"127.0.0.1:{port}",
                                  options.clients, mode="ping-fresh"))

        for round_number in range(1, options.rounds + 1):
            for target in targets:
                result = run_load(target.address, token, target.mode, clients=target.clients,
                                  warmup_s=options.warmup, seconds=options.seconds)
                target.results.append(result)
                print(f"  round {round_number}: {target.name:<34} {target.server:<8} {target.clients:3d} clients "
                      f"{result.throughput:8.0f} req/s  p50 {p50(result):6.2f} ms  p99 {p99(result):6.2f} ms  "
                      f"errors {result.errors}", file=sys.stderr)
            layer.append(measure_idempotency_layer(env, options.layer_calls))
    finally:
        for process in reversed(started):
            process.stop()
        shutil.rmtree(run_dir, ignore_errors=True)

    print_report(targets, options, layer)
    return 0


def print_report(targets: list[Target], options: argparse.Namespace, layer: list[tuple[float, float]]) -> None:
    floor = next(t for t in targets if t.name.startswith("floor") and t.server == "uvicorn") \
        if any(t.server == "uvicorn" for t in targets) else targets[0]
    floor_rate = floor.median(throughput)
    print(f"\nNo-op RPC, closed loop over keep-alive connections, {options.rounds} interleaved rounds of "
          f"{options.seconds:g} s per target: median (min–max). The load generator shares the machine's 2 cores.")
    print("× floor: median throughput over the Starlette echo's under uvicorn (the Python floor).\n")
    print("| target | server | clients | req/s | × floor | p50 ms | p99 ms | errors |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for t in targets:
        errors = sum(result.errors for result in t.results)
        print(f"| {t.name} | {t.server} | {t.clients} | {t.spread(throughput)} | {t.median(throughput) / floor_rate:.2f} "
              f"| {t.spread(p50, 2)} | {t.spread(p99, 2)} | {errors} |")
    layer_p50 = statistics.median(v[0] for v in layer)
    layer_p99 = statistics.median(v[1] for v in layer)
    print(f"\nIdempotency layer alone (fingerprint + claim + store in Valkey, sequential, {options.layer_calls} calls "
          f"per round): p50 {layer_p50:.3f} ms, p99 {layer_p99:.3f} ms (median of rounds; "
          f"p99 range {min(v[1] for v in layer):.3f}–{max(v[1] for v in layer):.3f} ms)")
    by_key = {(t.name, t.server, t.clients): t for t in targets}
    for (name, server, clients), keyed in by_key.items():
        plain = by_key.get((name.replace(" + idempotency_key", ""), server, clients))
        if "idempotency_key" in name and plain:
            where = "cluster, " if "cluster" in name else ""
            print(f"Idempotency key end to end ({where}{server}, {clients} clients): "
                  f"p50 {keyed.median(p50) - plain.median(p50):+.2f} ms, "
                  f"p99 {keyed.median(p99) - plain.median(p99):+.2f} ms vs no key")
    gateway = by_key.get(("REGISTRY.ping", "uvicorn", options.clients))
    if gateway:
        print(f"\nTargets (uvicorn, {options.clients} clients): ≥ 0.5× floor → {gateway.median(throughput) / floor_rate:.2f}×; "
              f"p99 < 20 ms → {gateway.median(p99):.2f} ms; idempotency ≤ 2 ms p99 → {layer_p99:.3f} ms (layer)")


if __name__ == "__main__":
    sys.exit(main())
