"""Valkey's own time for one fan-out chunk script, per recipient (no gateway, no sockets, no publisher Python).

Starts a Valkey, runs the fan-out chunk script (realtime/fanout_publisher.py) ``--rounds`` times on the same
``--recipients`` users (each run is a new event for all of them, on keys that exist, as in a live fan-out), and reads
the script's server-side time from ``INFO commandstats`` (``cmdstat_evalsha``: µs per call, the Lua and every command
it runs). A script variant to compare is given as a file with ``--variant``.

    flock /tmp/bench.lock .venv/bin/python bench/ws_fanout_lua.py [--recipients 250] [--rounds 200] [--variant x.lua]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from devstack import services  # noqa: E402
from devstack.processes import free_port  # noqa: E402


def measure(client, source: str, recipients: int, rounds: int) -> float:
    """µs of Valkey time per recipient of one chunk script."""
    from realtime.envelope import EnvelopeParts
    from realtime.fanout_publisher import _PendingFanout

    sha = client.script_load(source)
    uids = [f"lua-{uuid.uuid4().hex[:6]}-{n}" for n in range(recipients)]
    parts = EnvelopeParts.build("notif.sync", {"company": "all", "text": "maintenance at 22:00"})
    calls = [_PendingFanout(uids, parts, uuid.uuid4().hex[:24], "notif.sync").script_call() for _ in range(rounds + 1)]
    keys, args = calls[0]
    client.evalsha(sha, len(keys), *keys, *args)  # the keys exist from here on
    client.config_resetstat()
    for keys, args in calls[1:]:
        client.evalsha(sha, len(keys), *keys, *args)
    stats = client.info("commandstats")["cmdstat_evalsha"]
    return stats["usec"] / stats["calls"] / recipients


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--variant", action="append", default=[], help="a Lua file to compare with the kept script")
    options = parser.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="bench-lua-"))
    port = free_port()
    os.environ.update({"GATEWAY_MODE": "LOCAL", "REDIS_URL": f"redis://127.0.0.1:{port}/0",
                       "DATABASE_URL": f"sqlite:///{run_dir / 'db.sqlite3'}", "LOG_LEVEL": "WARNING"})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "listeners_project.settings")
    import django

    django.setup()
    import redis

    from realtime.fanout_publisher import _FANOUT

    valkey = services.valkey(port, run_dir).start()
    try:
        client = redis.Redis(port=port)
        scripts = [("kept (realtime/fanout_publisher.py)", _FANOUT.source)]
        scripts += [(variant, Path(variant).read_text()) for variant in options.variant]
        print(f"fan-out chunk script, {options.recipients} recipients, {options.rounds} calls: Valkey µs per recipient")
        for _ in range(2):  # twice, interleaved: the second pass shows the noise
            for name, source in scripts:
                print(f"  {name}: {measure(client, source, options.recipients, options.rounds):.2f}")
    finally:
        valkey.stop()


if __name__ == "__main__":
    main()
