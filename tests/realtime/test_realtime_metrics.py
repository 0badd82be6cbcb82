"""The realtime series of /metrics on a live gateway: recovery outcomes (a since-recovery that worked, a
recovery.failed), Pub/Sub lag (publish to dispatcher receive, single events and fan-out messages alike)."""
from __future__ import annotations

import re
import urllib.request

from core import metrics
from realtime.publisher import publish_event, publish_to_many
from tests.conftest import wait_until
from tests.realtime.test_ws_delivery import wait_for_subscription
from tests.realtime.wsclient import recv_events, recv_json, open_ws


def scrape(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=30) as response:  # noqa: S310 - loopback
        return response.read().decode()


def sample(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_recovery_outcomes_are_counted_ok_and_failed(live_gateway, service_token):
    ok, failed = 'gateway_recover_total{recovered="true"}', 'gateway_recover_total{recovered="false"}'
    before = scrape(live_gateway)
    for n in range(3):
        publish_event("rec-ok", "notif.sync", {"n": n})
    with open_ws(live_gateway, service_token, uid="rec-ok", since="1") as ws:
        assert [e["seq"] for e in recv_events(ws, 2)] == [2, 3]
    publish_event("rec-failed", "notif.sync", {})
    with open_ws(live_gateway, service_token, uid="rec-failed", since="99") as ws:
        assert recv_json(ws)["type"] == "recovery.failed"
    after = scrape(live_gateway)
    assert sample(after, ok) - sample(before, ok) >= 1
    assert sample(after, failed) - sample(before, failed) >= 1


def test_pubsub_lag_is_observed_for_events_and_fan_out_messages(live_gateway, service_token):
    count = "gateway_pubsub_lag_seconds_count"
    with open_ws(live_gateway, service_token, uid="lag-1") as ws:
        wait_for_subscription("user:lag-1")
        for publish in (lambda: publish_event("lag-1", "notif.sync", {}),
                        lambda: publish_to_many(["lag-1", "lag-2"], "notif.sync", {})):
            before = sample(scrape(live_gateway), count)

            def observed() -> bool:
                # Sampled (one per PUBSUB_LAG_SAMPLE_S per process): a message within 10 ms of the last observed one
                # is skipped, so publish again until one is seen.
                publish()  # noqa: B023 - called within this iteration
                assert recv_json(ws)["uid"] == "lag-1"
                return sample(scrape(live_gateway), count) > before  # noqa: B023

            wait_until(observed, interval=metrics.PUBSUB_LAG_SAMPLE_S * 2, message="no lag sample")
    text = scrape(live_gateway)
    # Lag is publish to receive on one machine: well under the histogram's top bucket.
    assert sample(text, count) == sample(text, 'gateway_pubsub_lag_seconds_bucket{le="10.0"}') >= 2


def test_the_lag_of_a_message_without_a_timestamp_is_not_observed():
    lag = metrics.pubsub_lag()
    before = lag._sum.get(), sum(b.get() for b in lag._buckets)
    metrics.observe_pubsub_lag(b'{"action":"restart","uid":"u1"}')
    assert (lag._sum.get(), sum(b.get() for b in lag._buckets)) == before
