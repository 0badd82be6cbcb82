"""EventConsumer against a live gateway and the real Valkey: order, filters, since, recovery.failed, refusals, Redis."""
from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import redis

from gateway_client import Backoff, ConsumerRefused, EventConsumer
from realtime.publisher import publish_event

FAST_BACKOFF = Backoff(initial_s=0.05, max_s=0.5)


async def publish(uid: str, event_type: str, payload: dict[str, Any] | None = None) -> int:
    result = await asyncio.to_thread(publish_event, uid, event_type, payload or {})
    return result.seq


async def take(queue: asyncio.Queue, count: int, timeout: float = 20.0) -> list[dict]:
    return [await asyncio.wait_for(queue.get(), timeout) for _ in range(count)]


async def until(predicate, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def test_events_arrive_in_order_on_the_queue_and_the_callback_filtered_by_kind(client, uid):
    async def scenario() -> None:
        queue: asyncio.Queue = asyncio.Queue()
        seen: list[dict] = []
        async with EventConsumer(uid, client=client, queue=queue, on_event=seen.append, kinds=("notif",)) as consumer:
            await consumer.wait_ready(20)
            for n in range(3):
                await publish(uid, "notif.job_updated", {"job_id": f"j{n}"})
            await publish(uid, "msg.new", {"message": {}})
            await publish(uid, "notif.sync", {"notifications": [], "count": 0})
            events = await take(queue, 4)
            assert [e["seq"] for e in events] == [1, 2, 3, 5]
            assert [e["payload"].get("job_id") for e in events[:3]] == ["j0", "j1", "j2"]
            assert seen == events and consumer.last_seq == 5  # the filtered msg.new still counts for ordering
            assert consumer.stats.connects == 1

    asyncio.run(scenario())


def test_since_at_the_first_connection_replays_the_history_after_it(client, uid):
    async def scenario() -> None:
        for n in range(5):
            await publish(uid, "notif.job_updated", {"n": n})
        queue: asyncio.Queue = asyncio.Queue()
        async with EventConsumer(uid, client=client, queue=queue, since=2) as consumer:
            await consumer.wait_ready(20)
            await publish(uid, "notif.job_updated", {"n": 5})
            assert [e["seq"] for e in await take(queue, 4)] == [3, 4, 5, 6]

    asyncio.run(scenario())


def test_recovery_failed_reaches_the_sink_and_the_resync_hook_and_numbering_continues(client, stack, uid):
    async def scenario() -> None:
        for n in range(3):
            await publish(uid, "notif.job_updated", {"n": n})
        stack.redis_client().delete(f"rt:{{user:{uid}}}:hist")  # history lost (expired/trimmed)
        queue: asyncio.Queue = asyncio.Queue()
        resyncs: list[dict] = []

        async def resync(event: dict) -> None:
            resyncs.append(event)

        async with EventConsumer(uid, client=client, queue=queue, since=1, on_resync=resync) as consumer:
            await consumer.wait_ready(20)
            failed = (await take(queue, 1))[0]
            assert failed["type"] == "recovery.failed" and failed["payload"]["current_seq"] == 3
            assert resyncs == [failed] and consumer.stats.recoveries_failed == 1
            await publish(uid, "notif.job_updated", {"n": 3})
            assert (await take(queue, 1))[0]["seq"] == 4

    asyncio.run(scenario())


def test_a_chat_consumer_gets_its_thread_only(client, uid):
    async def scenario() -> None:
        queue: asyncio.Queue = asyncio.Queue()
        async with EventConsumer(uid, client=client, queue=queue, space_code="sp1", thread_key="th1") as consumer:
            await consumer.wait_ready(20)
            assert consumer.channel == f"chat:{uid}:sp1:th1"
            await publish(uid, "notif.job_updated", {})
            await publish(uid, "chat.message", {"space_code": "sp1", "thread_key": "other", "raw_messages": []})
            mine = {"space_code": "sp1", "thread_key": "th1", "raw_messages": [{"id": "m"}]}
            await publish(uid, "chat.message", mine)
            event = (await take(queue, 1))[0]
            assert event["payload"]["thread_key"] == "th1" and event["seq"] == 1
            assert queue.empty()

    asyncio.run(scenario())


def test_a_refused_connection_stops_the_consumer_with_its_close_code(gateway_url, uid):
    async def scenario() -> None:
        consumer = EventConsumer(uid, url=gateway_url, token="not-a-token", backoff=FAST_BACKOFF)
        await consumer.start()
        with pytest.raises(ConsumerRefused) as refused:
            await consumer.wait_ready(20)
        assert refused.value.close_code == 4401
        await consumer.stop()

        calls = []

        def stale_token() -> str:  # a token provider gets a few chances to mint a fresh token
            calls.append(1)
            return "expired-token"

        consumer = EventConsumer(uid, url=gateway_url, token=stale_token, backoff=FAST_BACKOFF)
        with pytest.raises(ConsumerRefused):
            await asyncio.wait_for(consumer.run(), 30)
        assert len(calls) == 4

    asyncio.run(scenario())


def test_a_user_token_from_issue_ws_token_opens_only_that_users_stream(client, gateway_url, uid):
    client.call("REGISTRY.register_user", [uid, "s-consumer"], user_id=uid)  # tokens need a live session
    token = client.call("REGISTRY.issue_ws_token", [uid], user_id=uid)["token"]

    async def scenario() -> None:
        queue: asyncio.Queue = asyncio.Queue()
        async with EventConsumer(uid, url=gateway_url, token=token, queue=queue) as consumer:
            await consumer.wait_ready(20)
            await publish(uid, "msg.new", {"message": {"id": "m1"}})
            assert (await take(queue, 1))[0]["payload"]["message"]["id"] == "m1"
        with pytest.raises(ConsumerRefused) as refused:
            await asyncio.wait_for(EventConsumer("someone-else", url=gateway_url, token=token).run(), 20)
        assert refused.value.close_code == 4403

    asyncio.run(scenario())


def test_a_gateway_that_stops_answering_pings_is_dropped_and_the_consumer_reconnects():
    """The one test not against the gateway: a real WebSocket server that accepts, then never answers (a wedged
    process behind a load balancer that still holds the TCP connection), which the gateway itself can't be made
    to do."""
    from websockets.asyncio.server import serve

    connections = []

    async def handler(ws) -> None:
        connections.append(ws)
        if len(connections) == 1:
            await ws.wait_closed()  # wedged: reads nothing, answers nothing
        else:
            async for _ in ws:
                await ws.send('{"type":"pong"}')

    async def scenario() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            consumer = EventConsumer("u1", url=f"http://127.0.0.1:{port}", token="t", ping_interval_s=0.2,
                                     pong_timeout_s=0.5, backoff=FAST_BACKOFF)
            async with consumer:
                await consumer.wait_ready(10)
                assert len(connections) == 2 and consumer.stats.connects == 1

    asyncio.run(scenario())


# --- Redis transport -------------------------------------------------------------------------------------------------
def pubsub_client_ids(valkey: redis.Redis) -> set[str]:
    return {client["id"] for client in valkey.client_list(_type="pubsub")}


def test_redis_consumer_resubscribes_after_its_connection_is_killed_and_misses_nothing(stack, uid):
    valkey = redis.Redis(port=stack.redis_port)  # the node the consumer subscribes on (its redis_url), on a cluster too
    total = 120

    async def scenario() -> None:
        before = pubsub_client_ids(valkey)
        queue: asyncio.Queue = asyncio.Queue()
        consumer = EventConsumer(uid, transport="redis", redis_url=f"redis://127.0.0.1:{stack.redis_port}/0",
                                 redis_cluster=stack.cluster_mode, queue=queue, backoff=FAST_BACKOFF)
        async with consumer:
            await consumer.wait_ready(20)
            ours = pubsub_client_ids(valkey) - before
            assert len(ours) == 1
            stop = threading.Event()

            def publish_steadily() -> None:
                for n in range(total):
                    publish_event(uid, "notif.job_updated", {"n": n})
                    stop.wait(0.01)

            publisher = threading.Thread(target=publish_steadily, daemon=True)
            publisher.start()
            await until(lambda: (consumer.last_seq or 0) >= total // 3)
            valkey.client_kill_filter(_id=ours.pop())  # the connection drops mid-stream
            await asyncio.to_thread(publisher.join, 60)
            events = await take(queue, total)
            assert [e["seq"] for e in events] == list(range(1, total + 1))
            assert consumer.stats.connects >= 2 and consumer.stats.recoveries_failed == 0

    asyncio.run(scenario())


def test_redis_consumer_replays_since_and_reports_what_history_cannot_cover(stack, uid):
    redis_url = f"redis://127.0.0.1:{stack.redis_port}/0"

    async def scenario() -> None:
        for n in range(4):
            await publish(uid, "notif.job_updated", {"n": n})
        queue: asyncio.Queue = asyncio.Queue()
        async with EventConsumer(uid, transport="redis", redis_url=redis_url, redis_cluster=stack.cluster_mode,
                                 queue=queue, since=2) as consumer:
            await consumer.wait_ready(20)
            assert [e["seq"] for e in await take(queue, 2)] == [3, 4]

        stack.redis_client().delete(f"rt:{{user:{uid}}}:hist")
        resyncs: list[dict] = []
        async with EventConsumer(uid, transport="redis", redis_url=redis_url, redis_cluster=stack.cluster_mode,
                                 queue=queue, since=1, on_resync=resyncs.append) as consumer:
            await consumer.wait_ready(20)
            failed = (await take(queue, 1))[0]
            assert failed["type"] == "recovery.failed" and failed["payload"]["current_seq"] == 4
            assert resyncs == [failed]
            await publish(uid, "notif.job_updated", {"n": 4})
            assert (await take(queue, 1))[0]["seq"] == 5

    asyncio.run(scenario())


@pytest.mark.parametrize("transport", ["ws", "redis"])
def test_a_fanned_out_event_reaches_the_consumer_on_either_transport_in_seq_order(client, stack, uid, transport):
    from realtime.publisher import publish_to_many

    async def scenario() -> None:
        queue: asyncio.Queue = asyncio.Queue()
        options = {"transport": "redis", "redis_url": f"redis://127.0.0.1:{stack.redis_port}/0",
                   "redis_cluster": stack.cluster_mode} if transport == "redis" else {"client": client}
        async with EventConsumer(uid, queue=queue, backoff=FAST_BACKOFF, **options) as consumer:
            await consumer.wait_ready(20)
            await publish(uid, "notif.job_updated", {"n": 0})
            await asyncio.to_thread(publish_to_many, [f"{uid}-colleague", uid], "notif.sync", {"company": "all"})
            events = await take(queue, 2)  # the fan-out arrives by itself, not only when a later event reveals a gap
            await publish(uid, "notif.job_updated", {"n": 2})
            events += await take(queue, 1)
        assert [e["seq"] for e in events] == [1, 2, 3]
        assert events[1]["payload"] == {"company": "all"} and events[1]["uid"] == uid
        assert consumer.stats.recoveries_failed == 0

    asyncio.run(scenario())
