"""Per-minute activity counters: recorded in process, flushed to shared Redis buckets, summed over a minute."""
from __future__ import annotations

import time


from core import activity
from tests.conftest import wait_until



def _minute_ending_after_the_current_bucket() -> dict[str, int]:
    return activity.last_minute(now=time.time() + activity.BUCKET_S)


def test_recorded_calls_errors_and_events_add_up_after_a_flush():
    for code in ("OK", "OK", "NOT_FOUND", "INTERNAL"):
        activity.record_rpc_call(code=code)
    activity.record_events_published(25)
    activity.flush()
    assert _minute_ending_after_the_current_bucket() == {"events": 25, "rpc_calls": 4, "rpc_errors": 2}


def test_the_background_flusher_writes_without_being_asked():
    activity.record_events_published(3)
    wait_until(lambda: _minute_ending_after_the_current_bucket()["events"] == 3, timeout=10)


def test_buckets_older_than_a_minute_are_not_counted():
    activity.record_rpc_call(code="OK")
    activity.flush()
    assert activity.last_minute(now=time.time() + 2 * 60)["rpc_calls"] == 0
    assert activity.last_minute(now=time.time() - 60)["rpc_calls"] == 0


def test_counts_survive_a_redis_outage_until_the_next_flush(stack):
    activity.record_events_published(5)
    stack.processes["valkey"].stop()
    try:
        activity.flush()  # fails: the tally is kept
    finally:
        stack.restart("valkey")
    wait_until(lambda: _minute_ending_after_the_current_bucket()["events"] == 5, timeout=20)
