"""Where one login-path request's time goes: the gateway's ASGI app and the floor's, called in-process on one loop.

    .venv/bin/python bench/login_profile.py [--calls 3000] [--top 25] [--rows register,heartbeat,unregister,healthz]
    .venv/bin/python bench/registry.py --profile          # the same, from the registry bench

Starts a private Valkey, sets the gateway's environment (bench/rpc.py ``gateway_env``: LOCAL, DEBUG off, LOG_LEVEL
WARNING) and imports ``listeners_project.asgi.application``, the very app uvicorn serves, and the floor's
(bench/login_floor.py). Each request is one ASGI call with a prepared scope and body, awaited to its last ``send``
(no socket, no HTTP parsing: what the server adds is the same for both). For each row it prints the CPU time per call
of the loop's thread for the gateway and for the floor, sequential calls on one uvloop (the wait for Valkey is not
CPU, so a loaded machine inflates it much less than wall time), then a cProfile of the gateway's calls: the functions
with the most own time, in µs per request (cProfile's own overhead inflates every number about alike; read them as
shares).
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

ROWS = ("register", "heartbeat", "unregister", "healthz")


def _scope(method: str, path: str, token: str, body: bytes) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {token}".encode()),
               (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8090)}


def _request_factory(row: str, token: str) -> Callable[[int], tuple[dict, bytes]]:
    """n -> (scope, body) of the n-th call of this row (what bench/login_load.py sends, minus the HTTP framing)."""
    import orjson

    from bench.login_load import presession_id, uid_of

    uid = uid_of(0)

    def make(n: int) -> tuple[dict, bytes]:
        if row == "healthz":
            return _scope("GET", "/healthz", token, b""), b""
        if row == "register":
            envelope = {"method": "REGISTRY.register_user", "args": [uid, f"s-prof-{n}"], "user_id": uid,
                        "idempotency_key": f"reg-prof-{n}"}
        elif row == "heartbeat":
            envelope = {"method": "REGISTRY.heartbeat", "args": ["hb-0"], "user_id": uid}
        else:
            envelope = {"method": "REGISTRY.unregister_session", "args": [presession_id(0, n)], "user_id": uid,
                        "idempotency_key": f"unreg-prof-{n}-{secrets.token_hex(4)}"}
        body = orjson.dumps(envelope)
        return _scope("POST", "/rpc", token, body), body

    return make


async def _call(app: Any, scope: dict, body: bytes) -> int:
    sent: list[dict] = []
    delivered = False

    async def receive() -> dict:
        nonlocal delivered
        if delivered:
            await asyncio.Event().wait()  # a real server parks here until the client goes away
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"]


def _prepare(row: str, calls: int) -> None:
    """Sessions the heartbeat and unregister rows act on (registered with the gateway's script, untimed)."""
    from bench.login_load import presession_id, uid_of
    from core.integrations.redis import get_redis
    from registry import store

    get_redis().flushall()
    uid = uid_of(0)
    if row == "heartbeat":
        store.REGISTER(*store.register_call(uid, "hb-0", None, None))
    elif row == "unregister":
        store.run_many([store.register_call(uid, presession_id(0, n), None, None) for n in range(calls)],
                       store.REGISTER)


async def _timed(app: Any, requests: list[tuple[dict, bytes]], statuses: set[int]) -> float:
    """CPU µs per call of this thread (the loop's): unlike wall time, not inflated by a loaded machine, and without
    the wait for Valkey's answer, which is the same for both apps."""
    started = time.thread_time()
    for scope, body in requests:
        status = await _call(app, scope, body)
        if status not in statuses:
            raise SystemExit(f"unexpected status {status} for {scope['path']}")
    return (time.thread_time() - started) / len(requests) * 1e6


def profile_rows(rows: list[str], calls: int, top: int, token: str) -> None:
    from bench.login_floor import floor_app
    from listeners_project.asgi import application

    floor = floor_app()
    loop = asyncio.new_event_loop()
    ok = {200, 503}  # /healthz is 503 (degraded) with no Firestore here: still its complete answer
    for row in rows:
        make = _request_factory(row, token)
        for name, app in (("floor", floor), ("gateway", application)):  # warm both (scripts loaded, caches filled)
            _prepare(row, 200)
            loop.run_until_complete(_timed(app, [make(n) for n in range(200)], ok))
        per_call = {}
        for name, app in (("floor", floor), ("gateway", application)):
            _prepare(row, calls)
            per_call[name] = loop.run_until_complete(_timed(app, [make(n) for n in range(calls)], ok))
        print(f"\n## {row}: gateway {per_call['gateway']:.0f} µs CPU/call, "
              f"floor {per_call['floor']:.0f} µs CPU/call, difference {per_call['gateway'] - per_call['floor']:.0f} µs "
              f"(sequential, in-process, {calls} calls)")
        _prepare(row, calls)
        requests = [make(n) for n in range(calls)]
        profiler = cProfile.Profile()
        profiler.enable()
        loop.run_until_complete(_timed(application, requests, ok))
        profiler.disable()
        _print_profile(profiler, calls, top)
    loop.close()


def _print_profile(profiler: cProfile.Profile, calls: int, top: int) -> None:
    stats = pstats.Stats(profiler)
    entries = []
    for (filename, line, function), (_, ncalls, tottime, cumtime, _) in stats.stats.items():  # type: ignore
        where = _short(filename, line, function)
        entries.append((tottime, cumtime, ncalls, where))
    total = sum(entry[0] for entry in entries)
    print(f"cProfile (profiler on): {total / calls * 1e6:.0f} µs/call of own time in total")
    print("| own µs/call | cumulative µs/call | calls/request | function |\n|---:|---:|---:|---|")
    for tottime, cumtime, ncalls, where in sorted(entries, reverse=True)[:top]:
        print(f"| {tottime / calls * 1e6:.1f} | {cumtime / calls * 1e6:.1f} | {ncalls / calls:.1f} | {where} |")


def _short(filename: str, line: int, function: str) -> str:
    if filename == "~":
        return function
    for marker in ("site-packages/", str(BASE_DIR) + "/", "/lib/python3"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            break
    return f"{filename}:{line} {function}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000, help="Calls per row (default 3000).")
    parser.add_argument("--top", type=int, default=25, help="Functions shown per profile (default 25).")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"Comma-separated, of {', '.join(ROWS)}.")
    args = parser.parse_args()
    run(rows=args.rows.split(","), calls=args.calls, top=args.top)


def run(*, rows: list[str], calls: int, top: int) -> None:
    import subprocess

    from bench.rpc import gateway_env
    from devstack import services as dev_services
    from devstack.processes import free_port

    shm = Path("/dev/shm")
    run_dir = Path(tempfile.mkdtemp(prefix="bench-profile-", dir=shm if shm.is_dir() else None))
    redis_port, token = free_port(), secrets.token_urlsafe(24)
    valkey = dev_services.valkey(redis_port, run_dir).start()
    try:
        env = gateway_env(run_dir, redis_port, token)
        subprocess.run([sys.executable, str(BASE_DIR / "manage.py"), "migrate", "--noinput"], env=env, cwd=BASE_DIR,
                       check=True, capture_output=True)
        os.environ.update(env)
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        profile_rows(rows, calls, top, token)
    finally:
        valkey.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
