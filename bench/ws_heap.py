"""Where an idle ``/ws`` connection's memory goes: a tracemalloc diff of the gateway process around N idle sockets.

The gateway runs in this process (uvicorn with the project's protocol, the same options as the dev stack), with
tracemalloc on; a child process opens N sockets and holds them. The report is the Python heap growth per
connection by file and by allocation site, the process's RSS growth per connection (what bench/ws.py reports), and
the shallow sizes of one connection's objects (consumer, its ``__dict__``, scope, ASGI queue, protocol).

    .venv/bin/python bench/ws_heap.py               # 1,000 sockets
    .venv/bin/python bench/ws_heap.py --sockets 200
    .venv/bin/python bench/ws_heap.py --frames 12       # also the top allocation tracebacks (who holds each KB)
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import tracemalloc
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from devstack import services  # noqa: E402
from devstack.processes import free_port  # noqa: E402

TOKEN = "bench-token"
CLIENTS = r'''
import asyncio, sys
import websockets

async def main(url, count):
    sockets = []
    for start in range(0, count, 100):
        sockets += await asyncio.gather(*(websockets.connect(url.format(n=n), compression=None, open_timeout=60)
                                          for n in range(start, min(start + 100, count))))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
'''


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def one_connection_sizes() -> dict[str, int]:
    """Shallow sizes of the objects one connection holds (found through the gc)."""
    from realtime.consumers import EventsConsumer
    from listeners_project.ws_protocol import GatewayWebSocketProtocol

    consumer = next(o for o in gc.get_objects() if isinstance(o, EventsConsumer) and getattr(o, "channel", None))
    protocol = next(o for o in gc.get_objects() if isinstance(o, GatewayWebSocketProtocol))
    sizes = {
        "consumer": sys.getsizeof(consumer),
        "consumer.__dict__": sys.getsizeof(consumer.__dict__),
        "consumer.scope": sys.getsizeof(consumer.scope) + sum(sys.getsizeof(v) for v in consumer.scope.values()),
        "consumer.pending": sys.getsizeof(consumer.pending),
        "protocol": sys.getsizeof(protocol),
        "protocol.__dict__": sys.getsizeof(protocol.__dict__),
        "protocol.queue (ASGI receive queue)": sys.getsizeof(protocol.queue)
        + sys.getsizeof(getattr(protocol.queue, "__dict__", {})),
        "protocol.conn (websockets ServerProtocol)": sys.getsizeof(protocol.conn) + sys.getsizeof(protocol.conn.__dict__),
        "protocol.conn.reader (StreamReader)": sys.getsizeof(protocol.conn.reader.__dict__),
        "protocol.conn.parser (generator)": sys.getsizeof(protocol.conn.parser),
    }
    return sizes


def short(filename: str) -> str:
    return filename.replace(str(BASE_DIR) + "/", "").split("site-packages/")[-1].split("lib/python3.11/")[-1]


async def run(count: int, port: int, top: int, frames: int) -> None:
    import uvicorn

    from listeners_project.ws_protocol import GatewayWebSocketProtocol

    config = uvicorn.Config("listeners_project.asgi:application", host="127.0.0.1", port=port, lifespan="off",
                            ws=GatewayWebSocketProtocol, ws_per_message_deflate=False, access_log=False,
                            log_level="warning")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    # One socket first, so that what every first connection imports or caches is not counted per connection.
    url = f"ws://127.0.0.1:{port}/ws?uid=h{{n}}&token={TOKEN}"
    warm = await asyncio.create_subprocess_exec(sys.executable, "-c", CLIENTS, url.replace("h{n}", "warm"), "1",
                                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    await warm.stdout.readline()
    await asyncio.sleep(1)
    gc.collect()
    before, rss_before = tracemalloc.take_snapshot(), rss_kb()
    clients = await asyncio.create_subprocess_exec(sys.executable, "-c", CLIENTS, url, str(count),
                                                   stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert (await clients.stdout.readline()).strip() == b"ready"
    await asyncio.sleep(3)  # presence joins, subscriptions
    gc.collect()
    after, rss_after = tracemalloc.take_snapshot(), rss_kb()
    sizes = one_connection_sizes()
    for process in (clients, warm):
        process.stdin.write(b"\n")
        await process.stdin.drain()
        await process.wait()
    server.should_exit = True
    await serving

    filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
    before, after = before.filter_traces(filters), after.filter_traces(filters)
    total = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    print(f"\nIdle /ws connections: {count}, uvicorn + GatewayWebSocketProtocol, one process ({os.cpu_count()} cores)")
    print(f"RSS growth per connection: {(rss_after - rss_before) / count:.1f} KB; Python heap (tracemalloc) growth per "
          f"connection: {total / count / 1024:.1f} KB (the rest: kernel-side and allocator overhead)")
    print("\n| file | KB per connection |\n|---|---|")
    for stat in after.compare_to(before, "filename")[:top]:
        name = stat.traceback[0].filename.replace(str(BASE_DIR) + "/", "").split("site-packages/")[-1]
        print(f"| {name} | {stat.size_diff / count / 1024:.2f} |")
    print("\n| allocation site | KB per connection |\n|---|---|")
    for stat in after.compare_to(before, "lineno")[:top]:
        frame = stat.traceback[0]
        name = frame.filename.replace(str(BASE_DIR) + "/", "").split("site-packages/")[-1]
        print(f"| {name}:{frame.lineno} | {stat.size_diff / count / 1024:.2f} |")
    if frames > 1:
        print("\n| allocation traceback (innermost first) | KB per connection |\n|---|---|")
        for stat in after.compare_to(before, "traceback")[:top]:
            where = " < ".join(f"{short(f.filename)}:{f.lineno}" for f in reversed(stat.traceback))
            print(f"| {where} | {stat.size_diff / count / 1024:.2f} |")
    print("\n| one connection's object (shallow) | bytes |\n|---|---|")
    for name, size in sizes.items():
        print(f"| {name} | {size} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--frames", type=int, default=1, help="traceback depth kept by tracemalloc (>1: also a "
                        "table by traceback, slower)")
    options = parser.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="bench-ws-heap-"))
    redis_port = free_port()
    os.environ.update({
        "GATEWAY_MODE": "LOCAL", "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "LISTENERS_SERVICE_TOKEN": TOKEN,
        "DATABASE_URL": f"sqlite:///{run_dir / 'db.sqlite3'}", "LOG_LEVEL": "WARNING", "CHROMA_PATH": str(run_dir / "c"),
    })
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "listeners_project.settings")
    valkey = services.valkey(redis_port, run_dir).start()
    try:
        import django

        django.setup()
        tracemalloc.start(options.frames)
        import uvloop

        uvloop.run(run(options.sockets, free_port(), options.top, options.frames))
    finally:
        valkey.stop()


if __name__ == "__main__":
    main()
