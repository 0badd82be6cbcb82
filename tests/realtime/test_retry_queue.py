"""The retry queue's thread outlives a failure that is not a Redis error: the queue never stops draining."""
from __future__ import annotations

from typing import Any

from realtime.publishing import RetryQueue


class _FlakyPublish:
    """Fails like redis-py's cluster client mid-reconnect (an AttributeError), then succeeds."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.published = 0

    def publish_now(self) -> None:
        if self.failures:
            self.failures -= 1
            raise AttributeError("'NoneType' object has no attribute 'readline'")
        self.published += 1

    def describe(self) -> dict[str, Any]:
        return {"test": "flaky"}


def test_an_unexpected_error_is_retried_and_the_queue_drains_in_order():
    queue = RetryQueue()
    first, second = _FlakyPublish(failures=2), _FlakyPublish(failures=0)
    queue.put(first)
    queue.put(second)
    assert queue.wait_empty(timeout=30)
    assert (first.published, second.published) == (1, 1)
