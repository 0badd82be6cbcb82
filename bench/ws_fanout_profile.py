"""Where a fan-out's server time goes: the dispatcher's ``_fan_out`` timed and profiled at N local recipients.

The gateway runs in this process (uvicorn with the project's protocol and uvloop, as in production); a child process
opens N sockets (one user each) and reads them (bench/ws_clients.py: bench/ws.py's light sockets). Each round
publishes one event to all N users (``publish_to_many``) and times the dispatcher's handling of the batched message (decode, envelopes, every socket's send) with
``perf_counter``; the first round is reported apart (a brand-new channel's first event), the others under cProfile.
Then as many rounds of a floor: the same batches, each recipient's envelope framed and written straight to its
transport (what no implementation can go below: the ``send`` syscalls).

    .venv/bin/python bench/ws_fanout_profile.py                    # 10,000 sockets, 5 rounds
    .venv/bin/python bench/ws_fanout_profile.py --sockets 1000 --top 30
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from devstack import services  # noqa: E402
from devstack.processes import free_port  # noqa: E402

TOKEN = "bench-token"
async def run(count: int, port: int, rounds: int, top: int) -> None:
    import uvicorn

    from listeners_project.ws_protocol import GatewayWebSocketProtocol
    from realtime import dispatcher as dispatcher_module
    from realtime.presence import acount_online
    from realtime.publisher import publish_to_many

    timings: list[float] = []
    profiler = cProfile.Profile()
    profiling = [False]
    original = dispatcher_module.Dispatcher._fan_out

    def timed_fan_out(self, data: bytes) -> None:  # noqa: ANN001 - wraps the method under test
        if profiling[0]:
            profiler.enable()
        started = time.perf_counter()
        original(self, data)
        timings.append(time.perf_counter() - started)
        if profiling[0]:
            profiler.disable()

    dispatcher_module.Dispatcher._fan_out = timed_fan_out
    config = uvicorn.Config("listeners_project.asgi:application", host="127.0.0.1", port=port, lifespan="off",
                            ws=GatewayWebSocketProtocol, ws_per_message_deflate=False, access_log=False,
                            log_level="warning", loop="uvloop")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    # The light sockets of bench/ws.py, in one process: user n is "b{n}".
    clients = await asyncio.create_subprocess_exec(
        sys.executable, str(BASE_DIR / "bench" / "ws_clients.py"), "127.0.0.1", str(port), TOKEN, str(count), "1", "0",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)

    async def ask(command: str) -> dict:
        clients.stdin.write(f"{command}\n".encode())
        await clients.stdin.drain()
        return json.loads(await clients.stdout.readline())

    assert json.loads(await clients.stdout.readline())["ready"] == count
    while await acount_online() < count:
        await asyncio.sleep(0.2)
    await asyncio.sleep(1)
    uids = [f"b{n}" for n in range(count)]

    rows = []
    for round_number in range(2 * rounds + 1):
        profiling[0] = 0 < round_number <= rounds
        if round_number == rounds + 1:  # the floor: each recipient's frame written straight to its transport
            dispatcher_module.Dispatcher._fan_out = _transport_writes_only(timings)
        await ask("clear")
        started = time.time()  # the clients' receive times are wall clock
        await asyncio.to_thread(publish_to_many, uids, "notif.sync", {"fanout": round_number})
        last = (await ask(f"fanout {count} 120"))["last"]
        rows.append((1000 * sum(timings), 1000 * (last - started)))
        timings.clear()
        await asyncio.sleep(0.3)
    clients.stdin.write(b"quit\n")
    await clients.stdin.drain()
    await clients.wait()
    server.should_exit = True
    await serving

    print(f"\nFan-out to {count} local sockets, uvicorn + GatewayWebSocketProtocol + uvloop, one process "
          f"({os.cpu_count()} cores; the clients' process shares them)")
    print("\n| round | dispatcher _fan_out (server CPU on the loop) | publish -> the last frame at the client |")
    print("|---|---|---|")
    for number, (fan_out_ms, wall_ms) in enumerate(rows):
        label = "first (new channels)" if number == 0 else str(number) if number <= rounds else "floor: writes only"
        print(f"| {label} | {fan_out_ms:.1f} ms ({1000 * fan_out_ms / count:.1f} µs a recipient) | {wall_ms:.0f} ms |")
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    print(f"\ncProfile of rounds 1-{rounds} (tottime; the profiler's own overhead inflates the total ~2x):")
    print(out.getvalue())


def _transport_writes_only(timings: list[float]):  # noqa: ANN202 - a replacement for Dispatcher._fan_out
    """The least a fan-out can cost the server: one prebuilt frame written to each recipient's transport."""
    from realtime import fanout
    from realtime.channels import user_channel

    def fan_out(self, data: bytes) -> None:  # noqa: ANN001
        started = time.perf_counter()
        prefix = user_channel("")
        for subscribers, payload, _ in fanout.decode(data).envelopes(lambda uid: self._subscribers.get(prefix + uid)):
            length = len(payload)
            header = bytes((0x81, length)) if length < 126 else b"\x81\x7e" + length.to_bytes(2, "big")
            for subscriber in subscribers:
                subscriber.send_now.__self__.transport.write(header + payload)
        timings.append(time.perf_counter() - started)

    return fan_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--top", type=int, default=25)
    options = parser.parse_args()
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * options.sockets + 1000)), hard))
    run_dir = Path(tempfile.mkdtemp(prefix="bench-ws-fanout-"))
    redis_port = free_port()
    os.environ.update({
        "GATEWAY_MODE": "LOCAL", "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "LISTENERS_SERVICE_TOKEN": TOKEN,
        "DATABASE_URL": f"sqlite:///{run_dir / 'db.sqlite3'}", "LOG_LEVEL": "WARNING",
        "CHROMA_PATH": str(run_dir / "c"), "LISTENERS_WS_SEND_QUEUE": "10000",
    })
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "listeners_project.settings")
    valkey = services.valkey(redis_port, run_dir).start()
    try:
        import django

        django.setup()
        import uvloop

        uvloop.run(run(options.sockets, free_port(), options.rounds, options.top))
    finally:
        valkey.stop()


if __name__ == "__main__":
    main()
