"""WebSocket delivery benchmark: publish -> client frame, for the gateway under uvicorn and daphne, next to a floor.

One run measures, per server, on this machine with real Valkey:
  * publish -> frame latency p50/p99 and delivered fraction at 500 and 2,000 events/s spread over N sockets;
  * RSS per idle connection (server RSS growth / N);
  * fan-out: time from the publish call until the last of 1,000 users, and of all N, receives one event published to
    all of them, the CPU per fan-out of the server and of the client processes, and how long the publish call took
    (part of the wall time): for the gateway one batched Redis message per 1,000 users (publish_to_many), for the
    floor one pipelined PUBLISH per user (all it can read);
  * the time until every socket is open (the gateway: every user online in presence).
The floor is a plain `websockets` server fed by redis-py pub/sub (no Django), the same message path.

The sockets live in ``--client-procs`` processes (bench/ws_clients.py: bare asyncio protocols that parse frame headers
and take a receive time per frame), user n in process n mod procs, so a fan-out's frames are read in parallel and at a
few µs each: the wall time is the server's, not one client's reading 10,000 frames. They run on the same cores as
the server (2 here): the CPU columns show what the clients took per fan-out next to the server's, so a wall time
can be read against them (with 2 cores the wall time cannot be below (server + clients) / 2).

A last row runs the gateway (uvicorn) on a local 3-master Valkey Cluster (LISTENERS_REDIS_CLUSTER=true), in a child
run of this script with ``--redis-cluster``, so the cost of the cluster hop is read off the same run.

    .venv/bin/python bench/ws.py            # 1,000 sockets
    .venv/bin/python bench/ws.py --quick    # 200 sockets, short runs (smoke test)
    .venv/bin/python bench/ws.py --sockets 10000 --servers floor,uvicorn --no-cluster-row
    .venv/bin/python bench/ws.py --sockets 10000 --servers uvicorn --no-cluster-row --fanout-only   # fan-out alone
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from devstack import services  # noqa: E402
from devstack.processes import ManagedProcess, free_port, port_open  # noqa: E402
from devstack.valkey_cluster import start_cluster  # noqa: E402

FLOOR_SERVER = r'''
import asyncio, sys
from urllib.parse import parse_qs, urlparse
import redis.asyncio as aioredis
import websockets

async def main(port, redis_url):
    client = aioredis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    sockets = {}
    lock = asyncio.Lock()  # redis-py's PubSub races on its first connection when subscribed concurrently
    async def reader():
        while True:
            if pubsub.connection is None:
                await asyncio.sleep(0.01); continue
            msg = await pubsub.get_message(timeout=1.0)
            if msg:
                for ws in list(sockets.get(msg["channel"].decode(), ())):
                    try:
                        await ws.send(msg["data"].decode())
                    except websockets.ConnectionClosed:
                        pass
    async def handler(ws):
        uid = parse_qs(urlparse(ws.request.path).query)["uid"][0]
        channel = f"user:{uid}"
        async with lock:
            members = sockets.setdefault(channel, set())
            if not members:
                await pubsub.subscribe(channel)
            members.add(ws)
        try:
            await ws.wait_closed()
        finally:
            members.discard(ws)
    asyncio.get_running_loop().create_task(reader())
    async with websockets.serve(handler, "127.0.0.1", port, compression=None):
        await asyncio.Future()

asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
'''


def rss_kb(pid: int) -> int:
    total = 0
    for child in [pid, *children(pid)]:
        try:
            for line in Path(f"/proc/{child}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the server and its children (the wall-clock fan-out time is noisy on a loaded machine;
    the server's CPU per fan-out much less so)."""
    total = 0.0
    for child in [pid, *children(pid)]:
        try:
            stat = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            pass
    return total


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class ClientPool:
    """The bench's sockets, one user each, in ``procs`` client processes (bench/ws_clients.py: light sockets, a
    receive time per frame): process i holds users i, i + procs, ... so that any fan-out's recipients are spread
    over all of them. Times are wall-clock times (one machine: one clock for every process)."""

    def __init__(self, address: str, token: str | None, count: int, procs: int) -> None:
        self.address, self.token, self.count, self.procs = address, token, count, procs
        self.processes: list[asyncio.subprocess.Process] = []

    async def connect_all(self) -> None:
        host, port = self.address.split(":")
        for index in range(self.procs):
            self.processes.append(await asyncio.create_subprocess_exec(
                sys.executable, str(BASE_DIR / "bench" / "ws_clients.py"), host, port, self.token or "",
                str(self.count), str(self.procs), str(index),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 26))  # latencies: one line
        opened = sum(answer["ready"] for answer in await asyncio.gather(*(self._read(p) for p in self.processes)))
        if opened != self.count:
            raise RuntimeError(f"{opened} of {self.count} sockets opened")

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    async def _read(self, process: asyncio.subprocess.Process) -> dict:
        line = await process.stdout.readline()
        if not line:
            raise RuntimeError("a bench client process ended")
        return json.loads(line)

    async def ask(self, command: str, per_process: list[str] | None = None) -> list[dict]:
        for index, process in enumerate(self.processes):
            process.stdin.write(f"{command}{per_process[index] if per_process else ''}\n".encode())
            await process.stdin.drain()
        return list(await asyncio.gather(*(self._read(p) for p in self.processes)))

    async def latencies(self) -> list[float]:
        return sorted(sum((answer["latencies"] for answer in await self.ask("latencies")), []))

    async def received_latencies(self) -> int:
        return sum(answer["latencies"] for answer in await self.ask("count"))

    async def fan_out(self, publish, size: int, timeout_s: float = 30.0) -> tuple[int, float | None, float]:
        """Publish (in a thread) while every process waits for its share of the ``size`` first users' frames:
        (frames received, the last one's receive time, when the publish call returned)."""
        await self.ask("clear")
        shares = [f" {len(range(index, size, self.procs))} {timeout_s}" for index in range(self.procs)]
        waiting = asyncio.ensure_future(self.ask("fanout", shares))
        await asyncio.to_thread(publish)
        published = time.time()
        answers = await waiting
        lasts = [answer["last"] for answer in answers if answer["last"] is not None]
        return sum(answer["count"] for answer in answers), max(lasts) if lasts else None, published

    async def close_all(self) -> None:
        for process in self.processes:
            process.stdin.write(b"quit\n")
            await process.stdin.drain()
        await asyncio.gather(*(process.wait() for process in self.processes))


def publish_at_rate(publish, rate: int, seconds: float, users: int) -> int:
    """Paced publishing from a plain thread (like a listener thread would)."""
    sent = 0
    start = time.perf_counter()
    total = int(rate * seconds)
    while sent < total:
        target = start + sent / rate
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        publish(f"b{sent % users}", "notif.sync", {"t": time.time(), "n": sent})
        sent += 1
    return sent


def publish_to_each_channel(uids: list[str], event_type: str, payload: dict) -> None:
    """The floor's fan-out: it only reads per-user channels, so one pipelined PUBLISH per user (one round trip)."""
    from core.integrations.redis import get_redis

    pipe = get_redis().pipeline(transaction=False)
    for uid in uids:
        pipe.publish(f"user:{uid}", json.dumps({"type": event_type, "uid": uid, "payload": payload, "seq": 1}))
    pipe.execute()


async def settle(server_name: str, users: int, pid: int) -> None:
    """Until the server has finished opening every socket (the gateway: all users online in presence, its last step;
    at 10,000 sockets that is seconds after the handshakes) and is idle again, so that neither the idle memory nor
    the first latencies catch it still opening."""
    from realtime.presence import count_online

    deadline = time.monotonic() + 120
    while server_name != "floor" and time.monotonic() < deadline:
        if await asyncio.to_thread(count_online) >= users:
            break
        await asyncio.sleep(0.2)
    cpu = cpu_seconds(pid)
    while time.monotonic() < deadline:  # idle: under 10 % of a core over a second
        await asyncio.sleep(1)
        previous, cpu = cpu, cpu_seconds(pid)
        if cpu - previous < 0.1:
            break


async def measure_fanout(clients: ClientPool, fan_out, pid: int, size: int, repeats: int) -> dict:
    """One event to the first ``size`` users, ``repeats`` times: the time from the publish call until the last of them
    has it, anywhere (median and best), and the CPU per fan-out of the server and of the client processes."""
    times: list[float] = []
    publish_ms: list[float] = []
    delivered = 1.0
    cpu_before, clients_before = cpu_seconds(pid), sum(cpu_seconds(p) for p in clients.pids)
    for _ in range(repeats):  # one fan-out is one sample: the median of several is what the table shows
        started = time.time()
        uids = [f"b{n}" for n in range(size)]
        received, last, published = await clients.fan_out(
            lambda: fan_out(uids, "notif.sync", {"t": started, "fanout": 1}), size)
        publish_ms.append(1000 * (published - started))
        delivered = received / size
        if received < size:
            break
        times.append(1000 * (last - started))
        await asyncio.sleep(0.5)
    times.sort()
    return {"cpu_ms": 1000 * (cpu_seconds(pid) - cpu_before) / repeats, "delivered": delivered,
            "clients_cpu_ms": 1000 * (sum(cpu_seconds(p) for p in clients.pids) - clients_before) / repeats,
            "median_ms": times[len(times) // 2] if len(times) == repeats else None,
            "best_ms": times[0] if times else None, "publish_ms": sorted(publish_ms)[len(publish_ms) // 2]}


async def measure(server_name: str, address: str, pid: int, users: int, rates: list[int], seconds: float,
                  token: str | None, fanout_repeats: int = 5, fanout_sizes: tuple[int, ...] = (),
                  client_procs: int = 2) -> dict:
    from realtime.publisher import publish_event, publish_to_many

    rss_before = rss_kb(pid)
    clients = ClientPool(address, token, users, client_procs)
    started = time.monotonic()
    await clients.connect_all()
    await settle(server_name, users, pid)
    rss_after = rss_kb(pid)
    result = {"server": server_name, "kb_per_conn": (rss_after - rss_before) / users,
              "connect_s": time.monotonic() - started}
    for rate in rates:
        await clients.ask("clear")
        sent = await asyncio.to_thread(publish_at_rate, publish_event, rate, seconds, users)
        deadline = time.monotonic() + 10
        while await clients.received_latencies() < sent and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        lat = await clients.latencies()
        result[rate] = {
            "p50_ms": 1000 * lat[len(lat) // 2] if lat else float("nan"),
            "p99_ms": 1000 * lat[int(len(lat) * 0.99)] if lat else float("nan"),
            "delivered": len(lat) / sent,
        }
    fan_out = publish_to_many if server_name != "floor" else publish_to_each_channel
    result["fanout"] = {}
    for size in fanout_sizes:
        result["fanout"][size] = await measure_fanout(clients, fan_out, pid, size, fanout_repeats)
    await clients.close_all()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--users", "--sockets", type=int, dest="users", help="sockets, one user each (default 1,000)")
    parser.add_argument("--fanout-repeats", type=int, default=5, help="fan-outs measured (the median is shown)")
    parser.add_argument("--client-procs", type=int, default=2, help="client processes holding the sockets")
    parser.add_argument("--servers", default="floor,uvicorn,daphne")
    parser.add_argument("--redis-cluster", action="store_true", help="run on a local 3-master Valkey Cluster")
    parser.add_argument("--no-cluster-row", action="store_true", help="skip the uvicorn-on-a-cluster row")
    parser.add_argument("--json-out", help="also write the rows as JSON to this file")
    parser.add_argument("--fanout-only", action="store_true", help="skip the ev/s latency runs (fan-out experiments)")
    options = parser.parse_args()
    users = options.users or (200 if options.quick else 1000)
    seconds = 2.0 if options.quick else 5.0
    rates = [] if options.fanout_only else [500, 2000]
    fanout_sizes = tuple(sorted({min(1000, users), users}))  # to 1,000 users and to all of them
    raise_open_files(users + 1000)  # the server and each client process (children inherit the limit)

    run_dir = Path(tempfile.mkdtemp(prefix="bench-ws-"))
    cluster = start_cluster(run_dir) if options.redis_cluster else None
    redis_port = cluster.ports[0] if cluster else free_port()
    token = "bench-token"
    env = {
        "GATEWAY_MODE": "LOCAL", "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "LISTENERS_SERVICE_TOKEN": token,
        "LISTENERS_REDIS_CLUSTER": "true" if cluster else "false",
        "DATABASE_URL": f"sqlite:///{run_dir / 'db.sqlite3'}", "LOG_LEVEL": "WARNING", "CHROMA_PATH": str(run_dir / "c"),
        "LISTENERS_WS_SEND_QUEUE": "10000",
    }
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "listeners_project.settings")
    import django

    django.setup()
    import uvloop

    valkey = cluster.as_one_process() if cluster else services.valkey(redis_port, run_dir).start()
    results = []
    try:
        for name in options.servers.split(","):
            port = free_port()
            if name == "floor":
                script = run_dir / "floor.py"
                script.write_text(FLOOR_SERVER)
                proc = ManagedProcess("floor", [sys.executable, str(script), str(port), env["REDIS_URL"]],
                                      ready=lambda p=port: port_open(p), run_dir=run_dir, cwd=BASE_DIR).start()
                server_token = None
            else:
                proc = services.asgi_server(port, run_dir, {**os.environ, **env}, server=name, name=name).start()
                server_token = token
            try:
                label = f"{name}, 3-master cluster" if cluster else name
                results.append(uvloop.run(measure(label, f"127.0.0.1:{port}", proc.process.pid, users, rates,
                                                  seconds, server_token, options.fanout_repeats, fanout_sizes,
                                                  options.client_procs)))
            finally:
                proc.stop()
            import redis

            cluster.flushall() if cluster else redis.Redis(port=redis_port).flushall()
    finally:
        valkey.stop()
    if not cluster and not options.no_cluster_row:
        results += cluster_rows(options, run_dir)
    if options.json_out:
        Path(options.json_out).write_text(json.dumps(results))
    print_table(results, users, rates)


def raise_open_files(needed: int) -> None:
    """One file descriptor per socket, in the server and in the client processes (children: they inherit it)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            print(f"open files limited to {hard} (hard limit): {needed} wanted", file=sys.stderr)


def cluster_rows(options: argparse.Namespace, run_dir: Path) -> list[dict]:
    """The gateway (uvicorn) on a 3-master cluster: this script again, in a child process with its own settings."""
    import subprocess

    out = run_dir / "cluster-rows.json"
    argv = [sys.executable, __file__, "--redis-cluster", "--servers", "uvicorn", "--json-out", str(out)]
    argv += ["--quick"] if options.quick else []
    argv += ["--users", str(options.users)] if options.users else []
    argv += ["--client-procs", str(options.client_procs), "--fanout-repeats", str(options.fanout_repeats)]
    argv += ["--fanout-only"] if options.fanout_only else []
    subprocess.run(argv, check=True, cwd=BASE_DIR, stdout=subprocess.DEVNULL)
    rows = json.loads(out.read_text())
    for row in rows:  # JSON turned the rate and fan-out size keys into strings
        for key in [k for k in row if k.isdigit()]:
            row[int(key)] = row.pop(key)
        row["fanout"] = {int(size): value for size, value in row["fanout"].items()}
    return rows


def print_table(results: list[dict], users: int, rates: list[int]) -> None:
    print(f"\nWebSocket delivery, {users} sockets, one server process, Valkey on loopback ({os.cpu_count()} cores); "
          "the cluster row: 3 Valkey masters on the same machine")
    sizes = sorted(results[0]["fanout"]) if results else []
    columns = ["server", *(f"{r} ev/s p50 / p99 / delivered" for r in rates), "KB/idle conn", "all open in"]
    columns += [f"fan-out to {size} (last frame), median / best; CPU server / clients; publish call" for size in sizes]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * (len(rates) + 3 + len(sizes)))
    floor = next((r for r in results if r["server"] == "floor"), None)
    for row in results:
        cells = [f"{row[r]['p50_ms']:.2f} / {row[r]['p99_ms']:.2f} ms / {100 * row[r]['delivered']:.1f} %" for r in rates]
        cells += [f"{row['kb_per_conn']:.1f}", f"{row['connect_s']:.1f} s"]
        for size in sizes:
            fan = row["fanout"][size]
            cells.append(f"{fan['median_ms']:.0f} / {fan['best_ms']:.0f} ms; {fan['cpu_ms']:.0f} / "
                         f"{fan['clients_cpu_ms']:.0f} ms; {fan['publish_ms']:.0f} ms"
                         if fan["median_ms"] is not None else f"incomplete ({100 * fan['delivered']:.0f} %)")
        print(f"| {row['server']} | " + " | ".join(cells) + " |")
    if floor and rates:
        print("\nratios to the floor (same run): ", end="")
        parts = []
        for row in results:
            if row is floor:
                continue
            p50 = row[rates[-1]]["p50_ms"] / floor[rates[-1]]["p50_ms"]
            parts.append(f"{row['server']} p50@{rates[-1]} x{p50:.2f}")
        print(", ".join(parts))


if __name__ == "__main__":
    main()
