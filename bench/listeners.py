"""Listeners worker benchmark: database write -> WebSocket frame latency, and what 1,000 online users cost one worker.

It starts its own services (Valkey, the Firestore emulator, the Realtime DB stand-in, a uvicorn gateway and one
``manage.py run_listeners`` worker), seeds every user (2 unread notifications, 1 direct message, 3 jobs), brings
them online as registry sessions and measures:
  * attach time: from the presence announcements to every user's initial snapshots processed, the CPU each process
    spent meanwhile (the Firestore emulator's and the worker's side by side: which one bounds it), and its floor: the
    same queries as raw ``Listen`` calls from this process once the worker stopped (the emulator alone);
  * the worker's RSS, thread count, CPU while idle, and streams per Firestore connection;
  * write -> frame latency on a socket of one user, while the worker holds everyone: a task_manager write ->
    ``workflow.step_update``, a Realtime DB push -> ``msg.new``, and a notification write -> ``notif.sync``
    (coalesced: it waits for a 100 ms pause in the changes by design); the floor is a plain SDK listener in this
    process, on the job's document, then on the worker's own query.
With ``--takeover`` it then starts a second worker and SIGKILLs the first, which holds every user, and times the
takeover: until the dead worker is declared so (its pub/sub subscription went with its process), until every lease
is the second worker's, and until the second worker has every user's initial snapshots processed.
Everything is stopped at the end.

    .venv/bin/python bench/listeners.py            # 1,000 users, 200 samples per event kind
    .venv/bin/python bench/listeners.py --quick    # 100 users, 40 samples
    .venv/bin/python bench/listeners.py --quick --takeover
    .venv/bin/python bench/listeners.py --users 5000 --samples 50   # the per-process target (README)
    .venv/bin/python bench/listeners.py --samples 1 --warm-emulator 3  # the attach against a warmed-up emulator
    .venv/bin/python bench/listeners.py --samples 1 --profile /tmp/attach.prof  # where the worker's CPU goes
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from devstack import services  # noqa: E402
from devstack.processes import free_port, run_to_completion  # noqa: E402

PROJECT_ID = "bench-listeners"
WORKER_ID = "bench-worker"
SECOND_WORKER_ID = "bench-worker-2"
TOKEN = "bench-token"


def proc_status(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "Threads"):
            fields[name] = int(value.split()[0])
    return fields


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def seed(users: list[str]) -> None:
    from core.integrations.firebase import get_firestore
    from core.integrations.rtdb import reference

    db = get_firestore()
    for start in range(0, len(users), 80):  # 6 writes per user, batches of at most 500 writes
        batch = db.batch()
        for uid in users[start:start + 80]:
            for number in range(2):
                batch.set(db.document(f"clients/{uid}/notifications/n{number}"),
                          {"read": False, "job_id": f"j{number}", "file_name": f"f{number}.pdf", "status": "done"})
            for number in range(3):
                batch.set(db.document(f"clients/{uid}/task_manager/j{number}"), {
                    "document": {"initial_data": {"invoiceReference": f"INV-{number}", "currency": "EUR"}},
                    "APBookeeper_step_status": {"extract": 1},
                })
        batch.commit()
    reference("clients").update({
        f"{uid}/direct_message_notif/seed": {"file_name": "seed.pdf", "status": "new"} for uid in users
    })


class Socket:
    """One gateway WebSocket of the measured user; frames are matched by a predicate."""

    def __init__(self, address: str, uid: str) -> None:
        from websockets.sync.client import connect

        self.ws = connect(f"ws://{address}/ws?uid={uid}", additional_headers={"Authorization": f"Bearer {TOKEN}"},
                          open_timeout=15, max_queue=None)

    def wait_frame(self, match: Callable[[dict], bool], timeout: float = 15.0) -> float:
        deadline = time.monotonic() + timeout
        while True:
            event = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if match(event):
                return time.perf_counter()

    def close(self) -> None:
        self.ws.close()


def measure_latencies(address: str, uid: str, samples: int) -> dict[str, list[float]]:
    from core.integrations.firebase import get_firestore
    from core.integrations.rtdb import reference

    db = get_firestore()
    socket = Socket(address, uid)
    results: dict[str, list[float]] = {"workflow.step_update": [], "msg.new": [], "notif.sync": [], "write": [],
                                       "sdk": [], "sdk_query": [], "step_update_sdk": [], "step_update_sdk_query": []}
    # A plain SDK listener in this process: when the emulator itself delivered each change. On the job's document for
    # the first half of the samples, then on the worker's own query (the user's task_manager collection): the emulator
    # answers a change to a query listener with a RESET and every document of the result again, then CURRENT, later
    # than it tells a document listener. One at a time: a second SDK listener in this process slowed the first.
    delivered: dict[str, dict[int, float]] = {"sdk": {}, "sdk_query": {}}

    def on_job(kind: str, docs: list) -> None:
        for doc in docs:
            if doc.id == "j0":
                delivered[kind].setdefault((doc.to_dict() or {}).get("APBookeeper_step_status", {}).get("extract"),
                                           time.perf_counter())

    watches = {"sdk": db.document(f"clients/{uid}/task_manager/j0"), "sdk_query": db.collection(
        f"clients/{uid}/task_manager")}
    floor = "sdk"
    watch = watches[floor].on_snapshot(lambda docs, *_: on_job("sdk", docs))
    try:
        time.sleep(1.0)  # the socket's own join triggers a resync; let it pass before timing anything
        for number in range(samples + 5):  # the first 5 of each kind warm up connections and are not counted
            if number == 5 + samples // 2:
                watch.unsubscribe()
                floor = "sdk_query"
                watch = watches[floor].on_snapshot(lambda docs, *_: on_job("sdk_query", docs))
                time.sleep(1.0)
            started = time.perf_counter()
            db.document(f"clients/{uid}/task_manager/j0").update({"APBookeeper_step_status.extract": 100 + number})
            written = time.perf_counter()
            arrived = socket.wait_frame(lambda e, n=number: e["type"] == "workflow.step_update" and e["payload"][
                "step_changes"]["APBookeeper_step_status"].get("extract") == 100 + n)
            if number >= 5:
                results["workflow.step_update"].append((arrived - started) * 1000)
                results[f"step_update_{floor}"].append((arrived - started) * 1000)  # beside its own floor
                results["write"].append((written - started) * 1000)
                results[floor].append((wait_for(lambda n=number, k=floor: delivered[k].get(100 + n), 15,
                                                "SDK delivery") - started) * 1000)

            started = time.perf_counter()
            reference(f"clients/{uid}/direct_message_notif").push({"file_name": f"lat-{number}", "status": "new"})
            arrived = socket.wait_frame(lambda e, n=number: e["type"] == "msg.new"
                                        and e["payload"]["message"]["file_name"] == f"lat-{n}")
            if number >= 5:
                results["msg.new"].append((arrived - started) * 1000)

            started = time.perf_counter()
            db.document(f"clients/{uid}/notifications/lat{number}").set({"read": False, "file_name": f"lat{number}"})
            arrived = socket.wait_frame(lambda e, n=number: e["type"] == "notif.sync" and any(
                item["doc_id"] == f"lat{n}" for item in e["payload"]["notifications"]))
            if number >= 5:
                results["notif.sync"].append((arrived - started) * 1000)
            db.document(f"clients/{uid}/notifications/lat{number}").delete()
            time.sleep(0.15)  # let the delete's sync go out so the next sample starts from a quiet listener
    finally:
        watch.unsubscribe()
        socket.close()
    return results


def attach_floor(users: list[str], targets_per_stream: int, emulator_pid: int) -> dict[str, float]:
    """The floor of the attach: the worker's queries for every user (unread notifications, jobs) as raw ``Listen``
    calls from this process, ``targets_per_stream`` per call, all added at once, until every target is CURRENT.
    No snapshot is built: what is left is the emulator's own time. It runs after the worker stopped, on a warm
    emulator (its first queries cost it more: JIT), so it is a lower bound for the worker's cold attach."""
    import asyncio

    from google.cloud.firestore_v1.base_query import FieldFilter
    from google.cloud.firestore_v1.query import Query
    from google.cloud.firestore_v1.types import ListenRequest, Target, TargetChange

    from core.integrations.firebase import get_firestore
    from core.integrations.firestore_listen import new_listen_api

    db = get_firestore()
    queries = [query for uid in users for query in (
        db.collection(f"clients/{uid}/notifications").where(filter=FieldFilter("read", "==", False)),
        Query(db.collection(f"clients/{uid}/task_manager")))]

    def add(query: Any, target_id: int) -> ListenRequest:
        parent, _ = query._parent._parent_info()
        return ListenRequest(database=db._database_string, add_target=Target(
            target_id=target_id, query=Target.QueryTarget(parent=parent, structured_query=query._to_protobuf())))

    async def listen(api: Any, chunk: list) -> None:
        requests: asyncio.Queue = asyncio.Queue()
        for number, query in enumerate(chunk):
            requests.put_nowait(add(query, number + 1))

        async def sent() -> Any:
            while True:
                yield await requests.get()

        call = await api.listen(requests=sent(), metadata=db._rpc_metadata)
        current: set[int] = set()
        async for response in call:
            change = response._pb.target_change
            if change.target_change_type == TargetChange.TargetChangeType.CURRENT:
                current.update(change.target_ids)
                if len(current) == len(chunk):
                    break
        call.cancel()

    async def run() -> None:
        api = new_listen_api()
        await asyncio.gather(*(listen(api, queries[start:start + targets_per_stream])
                               for start in range(0, len(queries), targets_per_stream)))
        await api.transport.close()

    cpu_before, started = cpu_seconds(emulator_pid), time.monotonic()
    asyncio.run(asyncio.wait_for(run(), 600))
    return {"floor_s": time.monotonic() - started, "floor_emulator_cpu_s": cpu_seconds(emulator_pid) - cpu_before,
            "queries": len(queries)}


def environment(run_dir: Path, ports: dict[str, int]) -> dict[str, str]:
    return {
        "GATEWAY_MODE": "LOCAL", "REDIS_URL": f"redis://127.0.0.1:{ports['redis']}/0",
        "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{ports['firestore']}",
        "FIREBASE_DATABASE_EMULATOR_HOST": f"127.0.0.1:{ports['rtdb']}", "FIREBASE_PROJECT_ID": PROJECT_ID,
        "LISTENERS_SERVICE_TOKEN": TOKEN, "DATABASE_URL": f"sqlite:///{run_dir / 'db.sqlite3'}",
        "CHROMA_PATH": str(run_dir / "chroma"), "LOG_LEVEL": "WARNING", "NO_GCE_CHECK": "true",
        "LISTENERS_TTL_SECONDS": "3600",  # sessions stay online for the whole run without heart-beating
    }


def start_services(run_dir: Path, ports: dict[str, int], env: dict[str, str], rtdb_keepalive: float,
                   started: list, worker_args: list[str], profile: str | None = None) -> int:
    """Valkey, Firestore emulator, RTDB stand-in, migrations, uvicorn and the worker; returns the worker's pid."""
    from workflows import ownership

    started.append(services.valkey(ports["redis"], run_dir).start())
    started.append(services.firestore_emulator(ports["firestore"], run_dir).start())
    rtdb = services.rtdb_standin(ports["rtdb"], run_dir)
    rtdb.argv += ["--keepalive", str(rtdb_keepalive)]
    started.append(rtdb.start())
    if run_to_completion("migrate", [sys.executable, str(BASE_DIR / "manage.py"), "migrate", "--noinput"],
                         run_dir, env, cwd=BASE_DIR) != 0:
        raise SystemExit(f"migrate failed; see {run_dir / 'migrate.log'}")
    started.append(services.asgi_server(ports["asgi"], run_dir, env).start())
    worker_env = {**env, "LISTENERS_PROFILE": profile} if profile else env
    worker = services.manage_py("listeners", ["run_listeners", "--worker-id", WORKER_ID, *worker_args], run_dir,
                                worker_env, ready=lambda: ownership.registered_workers().get(WORKER_ID))
    started.append(worker.start())
    return worker.process.pid


def measure(pid: int, users: list[str], address: str, samples: int, started: list,
            warm_up: Callable[[], dict[str, float]] | None = None, warm_rounds: int = 0,
            profile: str | None = None, idle_s: float = 10.0) -> dict[str, Any]:
    from core.integrations.redis import get_redis
    from realtime import presence
    from workflows import ownership

    def stat(field: str) -> int:
        return int(get_redis().hget(ownership.stats_key(WORKER_ID), field) or 0)

    results: dict[str, Any] = {}
    seed_started = time.monotonic()
    seed(users)
    results["seeded_s"] = time.monotonic() - seed_started
    if warm_up is not None:
        results["warm_up"] = [warm_up() for _ in range(warm_rounds)]
    time.sleep(2)
    results["idle"] = proc_status(pid)
    processes = {process.name: process.process.pid for process in started}
    cpu_at_start = {name: cpu_seconds(process_pid) for name, process_pid in processes.items()}
    if profile:
        os.kill(pid, signal.SIGUSR1)  # workflows/profiling.py: the profile starts with the attach
    attach_started = time.monotonic()
    for uid in users:
        presence.join(uid, presence.session_member(f"bench-session-{uid}"))
    results["joined_s"] = time.monotonic() - attach_started
    # The worker publishes its counts once per tick (1 s): the phases are known to about a second.
    wait_for(lambda: stat("users") == len(users), timeout=600, what=f"{len(users)} users attached")
    results["attached_s"] = time.monotonic() - attach_started
    wait_for(lambda: stat("ready_users") == len(users), timeout=600, what=f"{len(users)} users ready")
    results["attach_s"] = time.monotonic() - attach_started
    results["attach_cpu_s"] = {name: cpu_seconds(process_pid) - cpu_at_start[name]
                               for name, process_pid in processes.items()}
    if profile:
        os.kill(pid, signal.SIGUSR2)  # ... and ends with it: the worker writes it
        wait_for(lambda: Path(profile).exists(), timeout=60, what="the worker's profile")
    time.sleep(3)
    results["held"] = proc_status(pid)
    cpu_before = cpu_seconds(pid)
    time.sleep(idle_s)
    results["idle_cpu_pct"], results["idle_s"] = (cpu_seconds(pid) - cpu_before) * 100 / idle_s, idle_s
    results["firestore"] = {field: stat(field) for field in ("firestore_connections", "firestore_streams",
                                                             "firestore_targets", "max_streams_per_connection")}
    results["latencies"] = measure_latencies(address, users[0], samples)
    results["after"] = proc_status(pid)
    return results


def measure_takeover(run_dir: Path, env: dict[str, str], users: list[str], started: list) -> dict[str, float]:
    """SIGKILL the worker holding every user once a second one runs; seconds from the kill to each phase."""
    from core.integrations.redis import get_redis
    from workflows import ownership

    first = started[-1]  # the worker start_services started
    second = services.manage_py("listeners-2", ["run_listeners", "--worker-id", SECOND_WORKER_ID], run_dir, env,
                                ready=lambda: ownership.registered_workers().get(SECOND_WORKER_ID))
    started.append(second.start())
    phases: dict[str, float] = {}

    def taken_over() -> bool:
        elapsed = time.monotonic() - killed_at
        if "declared_dead" not in phases and not ownership.registered_workers().get(WORKER_ID):
            phases["declared_dead"] = elapsed
        if "leases_moved" not in phases and set(ownership.owners(users).values()) == {SECOND_WORKER_ID}:
            phases["leases_moved"] = elapsed
        ready = int(get_redis().hget(ownership.stats_key(SECOND_WORKER_ID), "ready_users") or 0)
        if "leases_moved" in phases and ready == len(users):
            phases["all_ready"] = elapsed
        return "all_ready" in phases

    killed_at = time.monotonic()
    first.kill()
    wait_for(taken_over, timeout=300, what="the second worker to hold every user")
    return phases


def print_report(results: dict[str, Any], user_count: int, samples: int, rtdb_keepalive: float) -> None:
    idle, held = results["idle"], results["held"]
    firestore = results["firestore"]
    print(f"\nListeners worker, {user_count} online users, one worker process ({os.cpu_count()} cores, "
          f"Firestore emulator + RTDB stand-in (keep-alive every {rtdb_keepalive:g} s) + Valkey + uvicorn "
          f"on loopback; seeding took {results['seeded_s']:.1f} s)")
    print("| measure | value |")
    print("|---|---|")
    print(f"| attach time ({user_count} users, presence -> all initial snapshots processed) | "
          f"{results['attach_s']:.1f} s |")
    print(f"| ... of which: presence announced / every user attached (listeners opening) | "
          f"{results['joined_s']:.1f} s / {results['attached_s']:.1f} s |")
    print("| ... CPU seconds spent during the attach, per process | " + ", ".join(
        f"{name} {seconds:.1f}" for name, seconds in results["attach_cpu_s"].items()) + " |")
    floor, cpu = results["floor"], results["attach_cpu_s"]
    print(f"| ... Firestore emulator / worker CPU during the attach (2 cores: which side bounds it) | "
          f"{cpu['firestore']:.1f} CPU-s ({cpu['firestore'] * 1000 / floor['queries']:.1f} ms per query) / "
          f"{cpu['listeners']:.1f} CPU-s ({cpu['listeners'] * 1000 / user_count:.1f} ms per user) |")
    if results.get("warm_up"):
        rounds = results["warm_up"]
        print(f"| ... on a warm emulator: the floor's queries ran {len(rounds)} time(s) before the attach (from a cold "
              f"emulator: time, CPU; it keeps warming up) | " + "; ".join(
                  f"{warm_up['floor_s']:.1f} s, {warm_up['floor_emulator_cpu_s']:.1f} CPU-s" for warm_up in rounds)
              + " |")
    print(f"| floor: the same {floor['queries']} queries as raw Listen calls from the bench, emulator warm, worker "
          f"stopped (the emulator alone) | {floor['floor_s']:.1f} s, emulator {floor['floor_emulator_cpu_s']:.1f} "
          f"CPU-s |")
    print(f"| RSS idle (0 users) -> holding {user_count} users | {idle['VmRSS'] / 1024:.0f} MB -> "
          f"{held['VmRSS'] / 1024:.0f} MB ({(held['VmRSS'] - idle['VmRSS']) / user_count:.0f} KB/user) |")
    print(f"| threads idle -> holding {user_count} users | {idle['Threads']} -> {held['Threads']} |")
    print(f"| CPU while holding {user_count} idle users ({results['idle_s']:g} s) | {results['idle_cpu_pct']:.1f} % of "
          f"one core |")
    print(f"| Firestore queries / Listen streams / connections / max streams per connection | "
          f"{firestore['firestore_targets']} / {firestore['firestore_streams']} / "
          f"{firestore['firestore_connections']} / {firestore['max_streams_per_connection']} |")
    print(f"| RSS after the latency run | {results['after']['VmRSS'] / 1024:.0f} MB |")
    takeover = results.get("takeover")
    if takeover:
        print(f"| takeover: SIGKILL the worker holding {user_count} users (lease TTL {results['lease_ttl_s']:g} s) -> "
              f"declared dead / leases moved / all ready on the second worker | {takeover['declared_dead']:.2f} s / "
              f"{takeover['leases_moved']:.2f} s / {takeover['all_ready']:.2f} s |")
    print(f"\nWrite -> WebSocket frame, one user's socket, {samples} samples each, worker holding {user_count} users")
    print("| path | p50 | p99 | max |")
    print("|---|---|---|---|")
    for name, label in (("write", "(the Firestore write call alone, emulator round trip)"),
                        ("sdk", "(the same write -> a plain SDK listener on the job's document, bench process; "
                                "first half of the samples)"),
                        ("sdk_query", "(the same write -> a plain SDK listener on the worker's query, bench process; "
                                      "second half)"),
                        ("workflow.step_update", "Firestore task_manager write -> workflow.step_update"),
                        ("msg.new", "Realtime DB push -> msg.new"),
                        ("notif.sync", "Firestore notification write -> notif.sync (100 ms debounce)")):
        values = results["latencies"][name]
        if not values:
            continue  # a floor with no sample (--samples 1)
        print(f"| {label} | {percentile(values, 0.5):.1f} ms | {percentile(values, 0.99):.1f} ms | "
              f"{max(values):.1f} ms |")
    if not all(results["latencies"][floor] for floor in ("sdk", "sdk_query")):
        return
    extra = [percentile(results["latencies"][f"step_update_{floor}"], 0.5) - percentile(
        results["latencies"][floor], 0.5) for floor in ("sdk", "sdk_query")]
    print(f"| workflow.step_update p50 minus the SDK listener's, on the same half of the samples: document / query | "
          f"{extra[0]:+.1f} ms / {extra[1]:+.1f} ms | | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--users", type=int, help="online users (default 1,000; 100 with --quick)")
    parser.add_argument("--samples", type=int)
    parser.add_argument("--rtdb-keepalive", type=float, default=30.0,
                        help="seconds between the stand-in's SSE keep-alives (default 30, about Firebase's; the "
                             "test suite uses 1 s so that closing a listener is quick)")
    parser.add_argument("--idle-seconds", type=float, default=10.0,
                        help="how long the worker's CPU is measured while it holds the idle users (default 10)")
    parser.add_argument("--takeover", action="store_true",
                        help="then SIGKILL the worker and time a second worker taking every user over")
    parser.add_argument("--targets-per-stream", type=int, help="the worker's Firestore queries per Listen stream")
    parser.add_argument("--max-opening", type=int, help="the worker's queries waiting for a first snapshot at once")
    parser.add_argument("--threads", type=int, help="the worker's per-user queue threads")
    parser.add_argument("--profile", metavar="FILE",
                        help="cProfile every thread of the worker during the attach (workflows/profiling.py), write "
                             "the merged stats to FILE and print the top functions")
    parser.add_argument("--warm-emulator", type=int, nargs="?", const=1, default=0, metavar="ROUNDS",
                        help="run the attach floor ROUNDS times (default 1) before the attach too, so that the worker "
                             "attaches against a warm emulator (its first queries cost it more: JIT; it keeps warming "
                             "up over the first rounds: 7.0, 5.2, 4.7, 4.1 CPU-s)")
    options = parser.parse_args()
    worker_args = [*(["--targets-per-stream", str(options.targets_per_stream)] if options.targets_per_stream else []),
                   *(["--max-opening", str(options.max_opening)] if options.max_opening else []),
                   *(["--threads", str(options.threads)] if options.threads else [])]
    user_count = options.users or (100 if options.quick else 1000)
    samples = options.samples or (40 if options.quick else 200)
    users = [f"bench-{number:04d}" for number in range(user_count)]

    run_dir = Path(tempfile.mkdtemp(prefix="bench-listeners-"))
    ports = {name: free_port() for name in ("redis", "firestore", "rtdb", "asgi")}
    env = environment(run_dir, ports)
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "listeners_project.settings")
    import django

    django.setup()
    started: list = []
    try:
        profile = str(Path(options.profile).resolve()) if options.profile else None
        if profile:
            Path(profile).unlink(missing_ok=True)
        pid = start_services(run_dir, ports, env, options.rtdb_keepalive, started, worker_args, profile)
        emulator_pid = next(process for process in started if process.name == "firestore").process.pid
        warm_up = (lambda: attach_floor(users, options.targets_per_stream or 100, emulator_pid)) \
            if options.warm_emulator else None
        results = measure(pid, users, f"127.0.0.1:{ports['asgi']}", samples, started, warm_up,
                          options.warm_emulator, profile,
                          options.idle_seconds)
        if options.takeover:
            from django.conf import settings

            results["lease_ttl_s"] = settings.LISTENERS_LEASE_TTL_S
            results["takeover"] = measure_takeover(run_dir, env, users, started)
        for process in started:
            if process.name.startswith("listeners"):
                process.stop()
        results["floor"] = attach_floor(users, options.targets_per_stream or 100, emulator_pid)
    finally:
        for process in reversed(started):
            process.stop()
    print_report(results, user_count, samples, options.rtdb_keepalive)
    if profile:
        import pstats

        print(f"\nThe worker's threads during the attach (cProfile, {profile}): top by own time, then cumulative")
        stats = pstats.Stats(profile)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main()
