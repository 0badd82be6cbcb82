"""The cross-process time series: per-minute buckets in Redis, bounded, by method, API client and code."""
from __future__ import annotations

import time

from core import activity
from core.integrations.redis import get_redis
from core.logging import trace_id_from_traceparent



NAMES = ("rpc_calls", "rpc_errors", "events", "listener_restarts")
CLIENT = "activity-test"


def settled_totals() -> dict[str, int]:
    """The window's totals once nothing else is writing: gateway processes that earlier tests of the session started
    flush their last second of counts up to a second after their last call, after this test's wipe."""
    def totals() -> dict[str, int]:
        window = activity.minutes(count=60)
        return {name: sum(window.series(name)) for name in NAMES}

    previous, deadline = totals(), time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(2.5)  # more than two flush intervals (core/periodic_flush.py): a still process has flushed by then
        now = totals()
        if now == previous:
            return now
        previous = now
    raise AssertionError("other processes kept counting for 60 s")


def test_calls_errors_and_restarts_land_in_the_current_minute_by_method_client_and_code():
    before = settled_totals()
    for code in ("OK", "OK", "NOT_FOUND"):
        activity.record_rpc_call(code=code, method="REGISTRY.ping", client=CLIENT, trace_id=f"t-{code}", duration_ms=1.5)
    activity.record_rpc_call(code="INTERNAL", method="CHROMA_VECTOR.query", client=CLIENT, trace_id="t-internal")
    activity.record_listener_restart()
    activity.record_events_published(4)
    activity.flush()

    window = activity.minutes(count=60)
    assert len(window.starts) == 60 and window.starts[-1] == int(time.time()) // 60 * 60
    assert [sum(window.series(name)) - before[name] for name in NAMES] == [4, 2, 4, 1]
    assert window.series("rpc_calls")[-1] >= 4  # in the current minute
    calls = {(c.method, c.client, c.code): c.count for c in window.calls(last=5) if c.client == CLIENT}
    assert calls == {("REGISTRY.ping", CLIENT, "OK"): 2, ("REGISTRY.ping", CLIENT, "NOT_FOUND"): 1,
                     ("CHROMA_VECTOR.query", CLIENT, "INTERNAL"): 1}
    failures = [f for f in activity.recent_failures() if f["trace_id"].startswith("t-")]
    assert [(f["method"], f["code"], f["trace_id"]) for f in failures] == [
        ("CHROMA_VECTOR.query", "INTERNAL", "t-internal"), ("REGISTRY.ping", "NOT_FOUND", "t-NOT_FOUND"),
    ]


def test_the_series_are_bounded_in_time_and_length():
    for n in range(activity.FAILURES_KEPT + 20):
        activity.record_rpc_call(code="INTERNAL", method="REGISTRY.ping", trace_id=f"t{n}")
    activity.flush()
    redis = get_redis()
    assert redis.llen(activity.FAILURES_KEY) == activity.FAILURES_KEPT
    assert activity.recent_failures(limit=1)[0]["trace_id"] == f"t{activity.FAILURES_KEPT + 19}"
    minute_keys = list(redis.scan_iter(match="activity:m:*"))  # every master of a cluster (KEYS asks one)
    assert minute_keys and all(0 < redis.ttl(key) <= (activity.KEEP_MINUTES + 5) * 60 for key in minute_keys)
    # An hour later the minute is out of the window.
    assert sum(activity.minutes(now=time.time() + 3600).series("rpc_calls")) == 0


def test_gauge_samples_sum_sockets_over_processes():
    later = time.time() + 7200  # a minute no live gateway of the test session samples into
    activity.record_gauges(process="host-a:1", sockets=3, users_online=4, now=later)
    activity.record_gauges(process="host-a:2", sockets=2, users_online=4, now=later)
    window = activity.minutes(count=15, now=later)
    assert (window.series("sockets")[-1], window.series("users_online")[-1]) == (5, 4)


def test_a_w3c_traceparent_gives_its_trace_id():
    assert trace_id_from_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01") == \
        "4bf92f3577b34da6a3ce929d0e0e4736"
    for bad in (None, "", "00-xyz-00f067aa0ba902b7-01", "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"):
        assert trace_id_from_traceparent(bad) is None


def test_rpc_calls_are_recorded_with_method_client_and_the_callers_traceparent(rpc, client):
    trace = "0af7651916cd43dd8448eb211c80319c"
    response = client.post("/rpc", data=b'{"method": "NOPE.nothing", "args": []}', content_type="application/json",
                           HTTP_TRACEPARENT=f"00-{trace}-b7ad6b7169203331-01")  # no bearer: 401
    assert response.status_code == 401 and response.json()["trace_id"] == trace
    assert rpc("REGISTRY.ping").status == 200
    activity.flush()
    calls = {(c.method, c.client, c.code) for c in activity.minutes(count=1).calls(last=1)}
    assert calls == {("unknown", "anonymous", "UNAUTHENTICATED"), ("REGISTRY.ping", "svc", "OK")}
    assert activity.recent_failures()[0]["trace_id"] == trace
