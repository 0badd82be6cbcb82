"""Per-event provenance: an event's trace_id in the event viewer links to the trace page, which names the RPC call
(method, API client, outcome, duration) or the listener (worker, kind) that published it (core/provenance.py)."""
from __future__ import annotations

import uuid

import pytest
from django.urls import reverse

from core import provenance
from core.integrations.redis import get_redis
from core.keys import trace_key
from realtime.channels import user_channel
from tests.conftest import wait_until
from tests.rpc import methods_for_tests  # noqa: F401 - registers RPCTEST.*
from tests.workflows.conftest import go_online, make_worker, user_events  # noqa: F401 - make_worker is a fixture

pytestmark = pytest.mark.django_db

EVENTS = reverse("admin:console-events")


def trace_url(trace_id: str) -> str:
    return reverse("admin:console-trace", args=[trace_id])


def page_text(response) -> str:
    assert response.status_code == 200, response.content[:500]
    return " ".join(response.content.decode().split())


def test_an_rpc_calls_events_link_to_the_call_that_published_them(staff_client, rpc):
    trace_id = f"trace-{uuid.uuid4().hex[:8]}"
    response = rpc("RPCTEST.publish_events", "alice", kwargs={"count": 2}, user_id="alice", idempotency_key=uuid.uuid4().hex,
                   trace_id=trace_id)
    assert response.body["trace_id"] == trace_id and len(response.body["events"]) == 2
    provenance.flush()

    viewer = page_text(staff_client.get(EVENTS, {"channel": user_channel("alice")}))
    assert viewer.count(f'href="{trace_url(trace_id)}"') == 2  # one link per event of the call

    page = staff_client.get(trace_url(trace_id))
    found = page.context["found"]
    assert (found.origin, found.method, found.client, found.code, found.uid) == (
        "rpc", "RPCTEST.publish_events", "service token", "OK", "alice")
    assert found.duration_ms > 0 and [(e.channel, e.seq) for e in found.events] == [("user:alice", 1), ("user:alice", 2)]
    text = page_text(page)
    assert "Caused by an RPC call" in text and "RPCTEST.publish_events" in text and "2 events published" in text
    assert 0 < get_redis().ttl(trace_key(trace_id)) <= provenance.ttl_s()


def test_a_failed_call_shows_its_outcome(staff_client, rpc):
    response = rpc("RPCTEST.publish_events", "alice", user_id="alice", idempotency_key=uuid.uuid4().hex,
                   kwargs={"fail": True})
    assert response.code == "NOT_FOUND"
    provenance.flush()
    found = staff_client.get(trace_url(response.body["trace_id"])).context["found"]
    assert (found.code, found.ok) == ("NOT_FOUND", False)


def test_a_listeners_event_links_to_its_worker_and_kind(staff_client, make_worker):  # noqa: F811 - the fixture
    worker = make_worker()
    go_online("traced")
    [event] = wait_until(lambda: user_events("traced", "notif.sync"), timeout=30)
    # The in-process worker records the event's provenance in this process's buffer just after publishing it, so
    # the record may follow the event by a moment: flush until it is there.
    wait_until(lambda: provenance.flush() or provenance.read(event["trace_id"]), timeout=30)

    viewer = page_text(staff_client.get(EVENTS, {"channel": user_channel("traced")}))
    assert f'href="{trace_url(event["trace_id"])}"' in viewer
    page = staff_client.get(trace_url(event["trace_id"]))
    found = page.context["found"]
    assert (found.origin, found.worker, found.kind, found.uid, found.event_type) == (
        "listener", worker.worker_id, "notifications", "traced", "notif.sync")
    assert [(e.channel, e.seq) for e in found.events] == [("user:traced", event["seq"])]
    assert "Caused by a listener" in page_text(page)


def test_an_unknown_or_expired_trace_says_so(staff_client):
    page = staff_client.get(trace_url("never-published"))
    assert page.context["found"] is None and "No record of this trace" in page_text(page)


def test_the_trace_page_needs_the_console_permission(client, django_user_model):
    assert client.get(trace_url("t1")).status_code == 302
    client.force_login(django_user_model.objects.create_user("plain-staff", password="pw", is_staff=True))
    assert client.get(trace_url("t1")).status_code == 403


def test_trace_records_are_kept_console_trace_ttl_seconds(rpc, settings):
    """Redis holds events/s x CONSOLE_TRACE_TTL records: the setting bounds what provenance costs (README)."""
    settings.CONSOLE_TRACE_TTL = 45
    response = rpc("RPCTEST.publish_events", "alice", kwargs={"count": 1}, user_id="alice",
                   idempotency_key=uuid.uuid4().hex)
    provenance.flush()
    assert 0 < get_redis().ttl(trace_key(response.body["trace_id"])) <= 45
