"""The gateway process is restarted while events keep flowing: the consumer resumes with since and misses no seq,
and an RPC issued while the gateway is down completes once it is back."""
from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

from devstack.processes import ManagedProcess
from gateway_client import Backoff, EventConsumer, RetryPolicy, RpcClient
from realtime.publisher import publish_event
from tests.client.test_event_consumer import take, until
from tests.conftest import start_gateway

PUBLISH_INTERVAL_S = 0.1  # 10 events/s: even a slow restart (up to ~30 s) stays inside the 300-event history
PATIENT = RetryPolicy(max_attempts=1000, max_elapsed_s=60, backoff_initial_s=0.05, backoff_max_s=0.5)


class SteadyPublisher:
    """Publishes an event every PUBLISH_INTERVAL_S on a thread (as the listeners worker would) until the block ends."""

    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.published: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.published.append(publish_event(self.uid, "notif.job_updated", {"n": len(self.published)}).seq)
            self._stop.wait(PUBLISH_INTERVAL_S)

    def __enter__(self) -> "SteadyPublisher":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join(10)


def test_consumer_and_rpc_survive_a_gateway_restart_mid_stream(stack, service_token, uid):
    process, address = start_gateway(stack, name=f"asgi-restart-{uuid.uuid4().hex[:6]}")
    try:
        with RpcClient(f"http://{address}", service_token, retry=PATIENT) as client:
            client.catalogue()
            asyncio.run(restart_mid_stream(process, client, uid))
    finally:
        process.stop()


async def restart_mid_stream(process: ManagedProcess, client: RpcClient, uid: str) -> None:
    queue: asyncio.Queue = asyncio.Queue()
    resyncs: list[dict] = []
    idle_resyncs: list[dict] = []
    options = {"client": client, "backoff": Backoff(initial_s=0.05, max_s=0.5)}
    consumer = EventConsumer(uid, queue=queue, on_resync=resyncs.append, **options)
    idle = EventConsumer(f"{uid}-idle", on_resync=idle_resyncs.append, **options)
    async with consumer, idle:
        await consumer.wait_ready(20)
        await idle.wait_ready(20)
        with SteadyPublisher(uid) as publisher:
            await until(lambda: (consumer.last_seq or 0) >= 20)
            await asyncio.to_thread(process.stop)
            seq_when_stopped = publisher.published[-1]
            rpc_during_downtime = asyncio.ensure_future(asyncio.to_thread(client.request, "REGISTRY.ping"))
            await asyncio.sleep(0.5)  # events keep being published while nothing serves /ws
            await asyncio.to_thread(process.start)
            await until(lambda: consumer.stats.connects >= 2 and consumer.ready, timeout=30)
            caught_up_target = len(publisher.published) + 10  # the backlog, then ten live events after it
            await until(lambda: (consumer.last_seq or 0) >= caught_up_target)
        total = len(publisher.published)
        events = await take(queue, total)
        assert [e["seq"] for e in events] == list(range(1, total + 1)) == publisher.published
        assert total > seq_when_stopped + 10  # what was published during the downtime came from history
        assert resyncs == [] and consumer.stats.recoveries_failed == 0

        reply = await rpc_during_downtime
        assert reply.data == {"pong": True}
        assert reply.attempts and {a.code for a in reply.attempts} == {"UNAVAILABLE"}

        # A consumer that had seen no event has no seq to resume from: it asks for a re-sync instead of silently
        # skipping whatever was published while it was disconnected.
        await until(lambda: idle.stats.connects >= 2 and bool(idle_resyncs))
        assert "position unknown" in idle_resyncs[0]["payload"]["reason"]
