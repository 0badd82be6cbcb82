"""Internal Pub/Sub on a Redis Cluster: classic PUBLISH next to sharded SPUBLISH/SSUBSCRIBE (issue 17).

The gateway's internal channels (the fan-out channel, ``ws:control``, ``presence:events``) are heard by every ASGI
process's dispatcher. This measures, for one such channel and S subscriber connections (S gateway processes):

  * publish -> receipt latency p50/p99 at a steady rate (every subscriber must get every message);
  * a burst: M messages published back to back, time until the last subscriber has all of them;
  * cluster-bus messages per published message (``CLUSTER INFO`` ``cluster_stats_messages_publish*_sent``, all nodes).

Rows (same run): the floor, classic PUBLISH on one Valkey; classic PUBLISH on a local 3-master Valkey Cluster with the
subscribers on another node than the channel's (as the dispatcher, on ``ws:control``'s node, hears ``fanout:user``),
then on the channel's own node (no bus hop to them, still broadcast); sharded SPUBLISH with SSUBSCRIBE on its owner.
Messages are a fan-out batch's size (``--size``, default 4 KB) or a control message's (``--size 120``).

    .venv/bin/python bench/pubsub.py           # 4 subscribers, 2,000 msg/s for 3 s, burst of 5,000
    .venv/bin/python bench/pubsub.py --quick
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

import redis  # noqa: E402
from redis.cluster import RedisCluster  # noqa: E402

from devstack import services  # noqa: E402
from devstack.processes import free_port  # noqa: E402
from devstack.valkey_cluster import start_cluster  # noqa: E402

CHANNEL = "fanout:user"  # the dispatcher's fan-out channel (settings.LISTENERS_FANOUT_CHANNEL)


class Subscriber(threading.Thread):
    """One dispatcher's connection: records the receipt time of every message (numbered in its first 12 bytes)."""

    def __init__(self, port: int, sharded: bool, expected: int) -> None:
        super().__init__(daemon=True)
        self.pubsub = redis.Redis(port=port).pubsub(ignore_subscribe_messages=True)
        if sharded:
            self.pubsub.ssubscribe(CHANNEL)
        else:
            self.pubsub.subscribe(CHANNEL)
        self.pubsub.get_message(timeout=1.0)  # the subscribe confirmation
        self.expected = expected
        self.received: dict[int, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while len(self.received) < self.expected:
            message = self.pubsub.get_message(timeout=1.0)
            if message is not None:
                self.received[int(message["data"][:12])] = time.perf_counter()
        self.done.set()


def bus_messages(ports: list[int]) -> int:
    total = 0
    for port in ports:
        with redis.Redis(port=port) as node:
            info = node.execute_command("CLUSTER", "INFO").decode()
        for line in info.splitlines():
            if line.startswith(("cluster_stats_messages_publish_sent", "cluster_stats_messages_publishshard_sent")):
                total += int(line.split(":")[1])
    return total


def run_row(label: str, publish, sub_ports: list[int], sharded: bool, options: argparse.Namespace,
            cluster_ports: list[int] | None) -> dict:
    payload = b"x" * max(0, options.size - 12)
    rate_count = int(options.rate * options.seconds)
    total = rate_count + options.burst
    subscribers = [Subscriber(port, sharded, total) for port in sub_ports]
    for subscriber in subscribers:
        subscriber.start()
    bus_before = bus_messages(cluster_ports) if cluster_ports else 0
    sent: dict[int, float] = {}
    start = time.perf_counter()
    for n in range(rate_count):  # steady rate
        due = start + n / options.rate
        while time.perf_counter() < due:
            time.sleep(0.0002)
        sent[n] = time.perf_counter()
        publish(b"%012d" % n + payload)
    burst_start = time.perf_counter()
    for n in range(rate_count, total):
        sent[n] = time.perf_counter()
        publish(b"%012d" % n + payload)
    for subscriber in subscribers:
        subscriber.done.wait(60)
    delivered = sum(len(s.received) for s in subscribers) / (total * len(subscribers))
    latencies = sorted((s.received[n] - sent[n]) * 1000 for s in subscribers for n in range(rate_count) if n in s.received)
    last = max((s.received.get(total - 1, float("nan")) for s in subscribers), default=float("nan"))
    bus = (bus_messages(cluster_ports) - bus_before) / total if cluster_ports else 0.0
    for subscriber in subscribers:
        subscriber.pubsub.close()
    return {
        "row": label,
        "p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan"),
        "burst_ms": (last - burst_start) * 1000,
        "burst_per_s": options.burst / (last - burst_start) if last == last else 0.0,
        "delivered": delivered,
        "bus_per_msg": bus,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=4)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--burst", type=int, default=5000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    if options.quick:
        options.rate, options.seconds, options.burst = 1000, 1.0, 1000
    run_dir = Path(tempfile.mkdtemp(prefix="bench-pubsub-"))
    rows = []
    port = free_port()
    valkey = services.valkey(port, run_dir).start()
    try:
        client = redis.Redis(port=port)
        rows.append(run_row("floor: one Valkey, PUBLISH", lambda m: client.publish(CHANNEL, m),
                            [port] * options.subscribers, False, options, None))
        client.close()
    finally:
        valkey.stop()
    cluster = start_cluster(run_dir)
    try:
        client = RedisCluster(host="127.0.0.1", port=cluster.ports[0])
        owner = int(client.get_node_from_key(CHANNEL).port)
        other = next(p for p in cluster.ports if p != owner)  # classic: the dispatcher's node is not the channel's
        rows.append(run_row("cluster, PUBLISH (broadcast)", lambda m: client.publish(CHANNEL, m),
                            [other] * options.subscribers, False, options, cluster.ports))
        rows.append(run_row("cluster, PUBLISH, subscribers on the channel's node", lambda m: client.publish(CHANNEL, m),
                            [owner] * options.subscribers, False, options, cluster.ports))
        rows.append(run_row("cluster, SPUBLISH / SSUBSCRIBE", lambda m: client.spublish(CHANNEL, m),
                            [owner] * options.subscribers, True, options, cluster.ports))
        client.close()
    finally:
        cluster.stop()
    print_table(rows, options)


def print_table(rows: list[dict], options: argparse.Namespace) -> None:
    print(f"\nInternal Pub/Sub, {options.subscribers} subscriber connections, {options.size} B messages, "
          f"{options.rate} msg/s for {options.seconds:.0f} s then a burst of {options.burst}; "
          "the cluster: 3 Valkey masters on this machine")
    print("| row | p50 / p99 at rate | burst: last receipt, msg/s | delivered | bus msgs per publish |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['row']} | {row['p50_ms']:.2f} / {row['p99_ms']:.2f} ms | {row['burst_ms']:.0f} ms, "
              f"{row['burst_per_s']:,.0f} | {100 * row['delivered']:.1f} % | {row['bus_per_msg']:.2f} |")
    floor = rows[0]
    print("\nratios to the floor (same run): " + ", ".join(
        f"{row['row']} p50 x{row['p50_ms'] / floor['p50_ms']:.2f}, burst x{row['burst_ms'] / floor['burst_ms']:.2f}"
        for row in rows[1:]))


if __name__ == "__main__":
    main()
