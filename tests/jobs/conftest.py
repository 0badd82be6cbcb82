"""Job API fixtures: a runner in this process (threads), a Redis subscriber on the user's channel."""
from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis

from jobs.runner import JobRunner
from tests.conftest import wait_until

from . import kinds_for_tests  # noqa: F401 - registers testjobs.*


@pytest.fixture
def runner() -> Iterator[JobRunner]:
    running = JobRunner(worker_id="test-runner", threads=2, lease_ttl_s=1.0, poll_s=0.2).start()
    yield running
    for gate in kinds_for_tests.GATES.values():
        gate.set()
    running.stop()
    kinds_for_tests.GATES.clear()


class Events:
    def __init__(self, stack, channel: str) -> None:
        self.pubsub = redis.Redis(port=stack.redis_port).pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(channel)
        wait_until(lambda: self.pubsub.get_message(timeout=0.05) is None and self.pubsub.subscribed)
        self.seen: list[dict] = []

    def until(self, predicate, timeout: float = 20.0) -> list[dict]:
        def check():
            message = self.pubsub.get_message(timeout=0.1)
            if message:
                self.seen.append(json.loads(message["data"]))
            return any(predicate(event) for event in self.seen)

        wait_until(check, timeout=timeout)
        return self.seen


@pytest.fixture
def events(stack):
    def subscribe(uid: str) -> Events:
        return Events(stack, f"user:{uid}")

    return subscribe
