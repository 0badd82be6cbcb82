"""Mixed soak: RSS of every process over time under sustained login-path load, Firestore writes and sockets.

    .venv/bin/python bench/soak.py --minutes 10 --mode LOCAL      # the issue's run (then --mode PROD)
    .venv/bin/python bench/soak.py --minutes 3 --tracemalloc      # which allocation sites grow (slower: traced)

Starts on free loopback ports a Valkey, the Firestore emulator, the RTDB stand-in, one gateway (uvicorn) and the
listeners worker (``manage.py run_listeners``), in LOCAL or PROD settings (PROD: DEBUG off, production checks on,
the emulators standing in for Firebase). For the whole run, at once:

* **login path**: ``--clients`` keep-alive clients (bench/login_load.py, mode ``login``) each running whole sessions
  back to back: register_user (new session), two heartbeats, unregister_session; plus one ``GET /healthz`` client;
* **Firestore writes**: ``FIREBASE_MANAGEMENT.add_or_update_job_by_job_id`` through /rpc, one writer in a closed
  loop, on the notifications of the users whose sockets come and go (so the worker's listeners deliver them);
* **sockets**: ``--sockets`` threads, each opening ``/ws`` for one of those users, reading its frames for a couple of
  seconds, closing it, and opening the next (presence joins and leaves, listeners attached and released).

It samples VmRSS (/proc/<pid>/status) of every process every ``--sample-s`` and prints the table, then the growth of
each over the last ``--window-min`` minutes (the first minutes are warm-up: caches, pools and threads filling up).
The gateway, the worker and Valkey fail the run when they grow more than ``--max-growth-mb`` there, as does any
error; the Firestore emulator (a JVM test double that keeps every write in memory) and the RTDB stand-in are
reported, not judged. Valkey keeps the idempotency records of unregister_session for RPC_IDEMP_TTL (15 min), so it
grows with the call count in a run shorter than that; the soak sets RPC_IDEMP_TTL to 60 s to see past it, and
CONSOLE_TRACE_TTL (the console's trace records, one per publishing call and per listener event) likewise.

``--tracemalloc`` starts tracemalloc in the gateway and the worker at the start of the window (core/memtrace.py:
startup and warm-up run untraced), snapshots each then and at the end, and prints the allocation sites that grew most
in between. Tracing has its own memory (a trace per live block), so such a run reports RSS without judging it.
"""
from __future__ import annotations

import argparse
import json
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

SOCKET_USERS = [f"soak-u{n}" for n in range(8)]
JUDGED = ("gateway", "worker", "valkey")
WORKER_ID = "soak-worker"


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def soak_env(mode: str, run_dir: Path, ports: dict[str, int], token: str) -> dict[str, str]:
    from bench.rpc import gateway_env

    env = gateway_env(run_dir, ports["redis"], token)
    env.pop("DJANGO_DEBUG")  # each mode's own default: on in LOCAL, off in PROD
    env.update({
        "GATEWAY_MODE": mode, "WORKFLOW_LISTENER_ENABLED": "true", "FIREBASE_PROJECT_ID": "demo-soak",
        "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{ports['firestore']}",
        "FIREBASE_DATABASE_EMULATOR_HOST": f"127.0.0.1:{ports['rtdb']}",
        "RPC_IDEMP_TTL": "60",  # see the module docstring: Valkey's own growth would otherwise hide a leak
        "CONSOLE_TRACE_TTL": "60",  # the same for the trace records (one per publishing call and listener event)
    })
    if mode == "PROD":
        env.update({"DJANGO_SECRET_KEY": secrets.token_urlsafe(50), "DJANGO_ALLOWED_HOSTS": "127.0.0.1"})
    return env


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def add(self, name: str, amount: int = 1) -> None:
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + amount


def firestore_writer(address: str, token: str, stop: threading.Event, tally: Tally) -> None:
    """Notifications of the socket users, written through /rpc in a closed loop (an idempotency key per call)."""
    from bench.firebase_rpc import KeepAliveClient

    host, port = address.rsplit(":", 1)
    client = KeepAliveClient(host, int(port), token)
    n = 0
    try:
        while not stop.is_set():
            uid = SOCKET_USERS[n % len(SOCKET_USERS)]
            job = {"job_id": f"soak_job_{n % 40:03d}", "status": "running", "function_name": "APbookeeper",
                   "file_name": f"soak-{n}.pdf", "read": n % 3 == 0}
            envelope = {"method": "FIREBASE_MANAGEMENT.add_or_update_job_by_job_id",
                        "args": [f"clients/{uid}/notifications", job], "user_id": uid,
                        "idempotency_key": uuid.uuid4().hex}
            status, payload = client.post(json.dumps(envelope).encode())
            ok = status == 200 and json.loads(payload).get("ok") is True
            tally.add("firestore_writes" if ok else "firestore_errors")
            n += 1
    finally:
        client.close()


def socket_cycler(address: str, token: str, number: int, stop: threading.Event, tally: Tally) -> None:
    """Open /ws for one user, read frames for 1-3 s, close; again with the next user, until the end."""
    from websockets.sync.client import connect

    n = number
    while not stop.is_set():
        uid = SOCKET_USERS[n % len(SOCKET_USERS)]
        n += 1
        try:
            with connect(f"ws://{address}/ws?uid={uid}", additional_headers={"Authorization": f"Bearer {token}"},
                         open_timeout=15, close_timeout=5, max_queue=None) as ws:
                tally.add("sockets_opened")
                until = time.monotonic() + 1 + (n % 3)
                while (left := until - time.monotonic()) > 0:
                    try:
                        ws.recv(timeout=left)
                        tally.add("frames")
                    except TimeoutError:
                        break
        except Exception:  # noqa: BLE001 - counted; the soak's verdict says how many
            if not stop.is_set():
                tally.add("socket_errors")
                time.sleep(0.5)


def start_stack(mode: str, run_dir: Path, ports: dict[str, int], token: str, env: dict[str, str],
                started: list) -> dict[str, int]:
    """Every process of the run; returns {name: pid}."""
    import subprocess

    from devstack import services as dev_services
    from workflows import ownership

    started.append(dev_services.valkey(ports["redis"], run_dir).start())
    started.append(dev_services.firestore_emulator(ports["firestore"], run_dir).start())
    started.append(dev_services.rtdb_standin(ports["rtdb"], run_dir).start())
    subprocess.run([sys.executable, str(BASE_DIR / "manage.py"), "migrate", "--noinput"], env=env, cwd=BASE_DIR,
                   check=True, capture_output=True)
    started.append(dev_services.asgi_server(ports["asgi"], run_dir, env, name="gateway").start())
    started.append(dev_services.manage_py("worker", ["run_listeners", "--worker-id", WORKER_ID], run_dir, env,
                                          ready=lambda: ownership.registered_workers().get(WORKER_ID)).start())
    names = ["valkey", "firestore", "rtdb", "gateway", "worker"]
    return {name: process.process.pid for name, process in zip(names, started)}


def _bench_side_setup(env: dict[str, str]) -> None:
    """This process reads the worker's registration in the run's Valkey (start_stack's readiness check)."""
    import os

    os.environ.update({key: env[key] for key in ("REDIS_URL", "DATABASE_URL", "LISTENERS_SERVICE_TOKEN")})
    os.environ.update({"DJANGO_SETTINGS_MODULE": "listeners_project.settings", "GATEWAY_MODE": "LOCAL",
                       "DJANGO_DEBUG": "false", "LOG_LEVEL": "WARNING"})
    import django

    django.setup()


def snapshot(pids: dict[str, int], trace_dir: Path, number: int) -> dict[str, Path]:
    """Ask the traced processes for a snapshot (SIGUSR1, core/memtrace.py) and wait until each is written."""
    import os

    paths = {}
    for name in ("gateway", "worker"):
        os.kill(pids[name], signal.SIGUSR1)
        paths[name] = trace_dir / f"{pids[name]}-{number}.tracemalloc"
    deadline = time.monotonic() + 300
    while not all(path.exists() for path in paths.values()):
        if time.monotonic() > deadline:
            raise SystemExit("tracemalloc snapshots were not written within 5 minutes")
        time.sleep(0.5)
    return paths


def print_growth_sites(first: dict[str, Path], last: dict[str, Path], top: int) -> None:
    import tracemalloc

    for name in first:
        before, after = tracemalloc.Snapshot.load(str(first[name])), tracemalloc.Snapshot.load(str(last[name]))
        filters = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib*")]
        before, after = before.filter_traces(filters), after.filter_traces(filters)
        total = sum(stat.size for stat in after.statistics("filename")) - sum(
            stat.size for stat in before.statistics("filename"))
        print(f"\ntracemalloc, {name}: traced memory {total / 1e6:+.2f} MB between the two snapshots; "
              f"top {top} sites by growth")
        print("| growth KB | blocks | size now KB | allocated at |\n|---:|---:|---:|---|")
        for stat in after.compare_to(before, "lineno")[:top]:
            frame = stat.traceback[0]
            where = frame.filename.split("site-packages/")[-1].replace(str(BASE_DIR) + "/", "")
            print(f"| {stat.size_diff / 1024:+.1f} | {stat.count_diff:+d} | {stat.size / 1024:.1f} "
                  f"| {where}:{frame.lineno} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="Load duration (default 10, the issue's).")
    parser.add_argument("--mode", choices=("LOCAL", "PROD"), default="LOCAL")
    parser.add_argument("--clients", type=int, default=16, help="Login-path clients (default 16).")
    parser.add_argument("--sockets", type=int, default=4, help="Socket threads opening and closing /ws.")
    parser.add_argument("--sample-s", type=float, default=30.0, help="RSS sampling interval (default 30 s).")
    parser.add_argument("--window-min", type=float, default=8.0,
                        help="Growth is judged over the last this many minutes (default 8; at most 80%% of the run).")
    parser.add_argument("--max-growth-mb", type=float, default=10.0, help="Allowed growth in the window.")
    parser.add_argument("--tracemalloc", action="store_true", help="Print the allocation sites that grow.")
    parser.add_argument("--top", type=int, default=15, help="tracemalloc sites shown per process.")
    args = parser.parse_args()

    from bench.login_load import run_load
    from devstack.processes import free_port

    run_dir = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    ports = {name: free_port() for name in ("redis", "firestore", "rtdb", "asgi")}
    token = secrets.token_urlsafe(32)
    env = soak_env(args.mode, run_dir, ports, token)
    trace_dir = run_dir / "tracemalloc"
    if args.tracemalloc:
        trace_dir.mkdir()
        env["GATEWAY_TRACEMALLOC_DIR"] = str(trace_dir)
    seconds = args.minutes * 60
    window_s = min(args.window_min * 60, 0.8 * seconds)
    window_start = seconds - window_s
    address = f"127.0.0.1:{ports['asgi']}"
    started: list = []
    samples: list[tuple[float, dict[str, float]]] = []
    results: dict[str, Any] = {}
    tally, stop = Tally(), threading.Event()
    snapshots: list[dict[str, Path]] = []
    try:
        _bench_side_setup(env)
        pids = start_stack(args.mode, run_dir, ports, token, env, started)
        loads = [threading.Thread(target=lambda mode=mode, clients=clients: results.__setitem__(mode, run_load(
            address, token, mode, clients=clients, warmup_s=0.5, seconds=seconds)))
            for mode, clients in (("login", args.clients), ("healthz", 1))]
        extras = [threading.Thread(target=firestore_writer, args=(address, token, stop, tally), daemon=True)]
        extras += [threading.Thread(target=socket_cycler, args=(address, token, n, stop, tally), daemon=True)
                   for n in range(args.sockets)]
        for thread in loads + extras:
            thread.start()
        began = time.monotonic()
        while loads[0].is_alive():
            at = time.monotonic() - began
            samples.append((at, {name: rss_mb(pid) for name, pid in pids.items()}))
            if args.tracemalloc and not snapshots and at >= window_start:
                snapshots.append(snapshot(pids, trace_dir, 1))
            loads[0].join(timeout=args.sample_s)
        samples.append((time.monotonic() - began, {name: rss_mb(pid) for name, pid in pids.items()}))
        if args.tracemalloc:
            snapshots.append(snapshot(pids, trace_dir, 2))
        stop.set()
        for thread in loads + extras:
            thread.join(timeout=30)
        if args.tracemalloc and len(snapshots) == 2:
            print_growth_sites(snapshots[0], snapshots[1], args.top)
    except BaseException:
        for log in sorted(run_dir.glob("*.log")):  # the run dir is removed below: show why a process failed
            print(f"--- {log.name} (last lines)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:]))
        raise
    finally:
        stop.set()
        for process in reversed(started):
            process.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
    return report(args, samples, results, tally, window_start)


def report(args: argparse.Namespace, samples: list[tuple[float, dict[str, float]]], results: dict[str, Any],
           tally: Tally, window_start: float) -> int:
    names = list(samples[0][1])
    login, healthz = results["login"], results["healthz"]
    print(f"\nSoak, {args.mode}: {args.minutes:g} min; {args.clients} login-path clients (register, 2 heartbeats, "
          f"unregister), 1 /healthz client, 1 Firestore writer, {args.sockets} socket cyclers"
          f"{' (tracemalloc on: slower)' if args.tracemalloc else ''}")
    print("| t (s) | " + " | ".join(f"{name} RSS MB" for name in names) + " |")
    print("|---:|" + "---:|" * len(names))
    for at, rss in samples:
        print(f"| {at:.0f} | " + " | ".join(f"{rss[name]:.1f}" for name in names) + " |")
    window = [rss for at, rss in samples if at >= window_start]
    growth = {name: window[-1][name] - window[0][name] for name in names} if len(window) > 1 else {}
    print(f"\ngrowth over the last {(samples[-1][0] - window_start) / 60:.1f} min (t >= {window_start:.0f} s): "
          + ", ".join(f"{name} {growth.get(name, 0.0):+.1f} MB" for name in names)
          + f"  (limit {args.max_growth_mb:g} MB for {', '.join(JUDGED)})")
    counts = tally.counts
    errors = login.errors + healthz.errors + counts.get("firestore_errors", 0) + counts.get("socket_errors", 0)
    print(f"login path: {login.requests:,} requests ({login.throughput:,.0f}/s), {login.errors} errors; "
          f"/healthz: {healthz.requests:,}, {healthz.errors} errors; Firestore writes: "
          f"{counts.get('firestore_writes', 0):,}, {counts.get('firestore_errors', 0)} errors; sockets opened: "
          f"{counts.get('sockets_opened', 0):,}, frames received {counts.get('frames', 0):,}, "
          f"{counts.get('socket_errors', 0)} errors")
    grown = [] if args.tracemalloc else [name for name in JUDGED if growth.get(name, 0.0) > args.max_growth_mb]
    verdict = "FAIL" if grown or errors else "PASS"
    print(f"{verdict}: {errors} errors; grew past the limit: {', '.join(grown) or 'none'}")
    return 1 if verdict == "FAIL" else 0


if __name__ == "__main__":
    sys.exit(main())
