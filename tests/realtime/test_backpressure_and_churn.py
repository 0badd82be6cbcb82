"""Slow consumers, Redis outages and client churn: every event arrives, or the client is told it must re-sync."""
from __future__ import annotations

import json
import random
import threading
import time
from urllib.parse import urlencode

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from realtime.publisher import publish_event, wait_for_retry_queue
from tests.conftest import start_gateway
from tests.realtime.test_ws_delivery import wait_for_subscription
from tests.realtime.wsclient import open_ws, recv_json


@pytest.fixture(scope="module")
def small_queue_gateway(stack):
    process, address = start_gateway(stack, extra_env={"LISTENERS_WS_SEND_QUEUE": "64"}, name="asgi-smallq")
    yield address
    process.stop()


def test_slow_client_is_closed_with_4008_while_others_keep_their_latency(small_queue_gateway, service_token):
    query = urlencode({"uid": "slow", "token": service_token})
    # max_queue=1: the client library stops reading the socket after one unread frame -> real TCP backpressure.
    slow = connect(f"ws://{small_queue_gateway}/ws?{query}", max_queue=1, open_timeout=15)
    fast = open_ws(small_queue_gateway, service_token, uid="fast")
    wait_for_subscription("user:slow")
    wait_for_subscription("user:fast")
    blob = "x" * 8192
    latencies = []
    closed_code = None
    for n in range(4000):
        publish_event("slow", "notif.sync", {"n": n, "blob": blob})
        if n % 100 == 0:
            sent = time.perf_counter()
            publish_event("fast", "notif.sync", {"n": n})
            recv_json(fast)
            latencies.append(time.perf_counter() - sent)
    try:
        while True:
            slow.recv(timeout=15)
    except ConnectionClosed as exc:
        closed_code = exc.rcvd.code if exc.rcvd else None
    finally:
        fast.close()
    assert closed_code == 4008
    latencies.sort()
    assert latencies[len(latencies) // 2] < 0.05, latencies  # generous: the machine is shared; bench/ws.py measures


def test_publish_during_a_redis_outage_is_queued_then_delivered_in_order(stack, live_gateway, service_token):
    with open_ws(live_gateway, service_token, uid="r1") as ws:
        wait_for_subscription("user:r1")
        publish_event("r1", "notif.sync", {"n": 0})
        assert recv_json(ws)["seq"] == 1
        stack.processes["valkey"].kill()
        results = [publish_event("r1", "notif.sync", {"n": n}) for n in range(1, 6)]
        assert all(r.queued and r.seq is None for r in results)
        stack.restart("valkey")
        assert wait_for_retry_queue(timeout=30)
        # Valkey restarted empty, so seq restarts; the socket must still get all five, in order (or be told to resync).
        got = []
        while len(got) < 5:
            event = recv_json(ws, timeout=30)
            got.append(event)
        kinds = [e["type"] for e in got]
        if "recovery.failed" in kinds:
            return  # acceptable: the client was told explicitly
        assert [e["payload"]["n"] for e in got] == [1, 2, 3, 4, 5]


@pytest.mark.slow
def test_churn_every_client_gets_every_event_or_an_explicit_recovery_failed(live_gateway, service_token):
    """Clients connect/disconnect in a loop (resuming with since) while 10,000 events flow."""
    users = [f"churn{n}" for n in range(10)]
    total_per_user = 1000
    stop = threading.Event()
    outcomes: dict[str, str] = {}

    def client(uid: str) -> None:
        last = 0
        seen: list[int] = []
        rng = random.Random(uid)
        while True:
            try:
                with open_ws(live_gateway, service_token, uid=uid, since=str(last)) as ws:
                    for _ in range(rng.randint(20, 200)):
                        event = json.loads(ws.recv(timeout=30))
                        if event["type"] == "recovery.failed":
                            outcomes[uid] = "recovery.failed"
                            return
                        assert event["seq"] == last + 1, (uid, last, event["seq"])
                        last = event["seq"]
                        seen.append(last)
                        if last == total_per_user:
                            outcomes[uid] = "complete" if seen == list(range(1, total_per_user + 1)) else "gap"
                            return
            except TimeoutError:
                outcomes[uid] = f"timeout at {last}"
                return

    threads = [threading.Thread(target=client, args=(uid,)) for uid in users]
    for thread in threads:
        thread.start()
    for n in range(total_per_user):
        for uid in users:
            publish_event(uid, "notif.sync", {"n": n})
    for thread in threads:
        thread.join(timeout=120)
    stop.set()
    assert set(outcomes) == set(users)
    assert all(outcome in {"complete", "recovery.failed"} for outcome in outcomes.values()), outcomes
    assert list(outcomes.values()).count("complete") >= 1
