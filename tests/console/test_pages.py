"""The console's pages: RPC errors panel, workers, event viewer, dashboard charts; what each shows, who may see it,
and a constant number of SQL queries with 10 and 1,000 rows."""
from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from core import activity
from listeners_project import processes
from core import timefmt
from realtime.channels import user_channel
from realtime.publisher import publish_event
from rpc.services import api_client_create
from workflows import ownership
from workflows.models import ListenerState

pytestmark = pytest.mark.django_db

RPC, WORKERS, EVENTS = reverse("admin:console-rpc"), reverse("admin:console-workers"), reverse("admin:console-events")
TAIL, DASHBOARD, STATS = reverse("admin:console-events-tail"), reverse("admin:dashboard"), reverse("admin:dashboard-stats")
MAX_QUERIES = 10


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return len(captured)


@pytest.mark.django_db(transaction=True)  # the API client is authenticated on a worker thread: commit it
def test_rpc_panel_shows_calls_and_errors_by_method_code_and_client_and_the_latest_failures(staff_client, rpc):
    client, token = api_client_create(name="reflex-app", namespaces=["REGISTRY"])
    assert rpc("REGISTRY.ping", token=token).status == 200
    assert rpc("CHROMA_VECTOR.heartbeat_collection", "u1", "c1", token=token, user_id="u1").code == "PERMISSION_DENIED"
    assert rpc("REGISTRY.nope").code == "METHOD_NOT_FOUND"
    activity.flush()

    page = staff_client.get(RPC)
    assert page.status_code == 200
    five, sixty = page.context["windows"]
    assert (five.minutes, five.calls, five.errors) == (5, 3, 2) and sixty.calls == 3
    assert {row.key: (row.calls, row.errors) for row in five.by_client} == {"reflex-app": (2, 1), "service token": (1, 1)}
    assert {row.key for row in five.by_code} == {"OK", "PERMISSION_DENIED", "METHOD_NOT_FOUND"}
    failures = page.context["failures"]
    assert [(f["code"], f["client"]) for f in failures] == [("METHOD_NOT_FOUND", "service token"),
                                                            ("PERMISSION_DENIED", "reflex-app")]
    assert all(len(f["trace_id"]) == 32 for f in failures) and failures[0]["trace_id"].encode() in page.content
    assert b"CHROMA_VECTOR.heartbeat_collection" in page.content


def test_workers_page_lists_listeners_workers_and_asgi_processes(staff_client):
    ownership.heartbeat("w-live", {"users": 2, "ready_users": 2, "firestore_streams": 5, "heartbeat_at": time.time()},
                        ttl_ms=30_000)
    ListenerState.objects.create(worker_id="w-live", uid="u1", kinds=["messages"], since=timezone.now(), restarts=2)
    ListenerState.objects.create(worker_id="w-gone", uid="u2", kinds=["messages"], since=timezone.now(), restarts=1)
    processes.beat()

    page = staff_client.get(WORKERS)
    workers = {w.worker_id: w for w in page.context["listeners_workers"]}
    # No process subscribed to w-live's control channel here: registered and beating, but "stale".
    assert (workers["w-live"].state, workers["w-live"].users, workers["w-live"].streams) == ("stale", 2, 5)
    assert (workers["w-gone"].state, workers["w-gone"].restarts) == ("dead", 1)
    # Other gateways of the test session may beat too: this process is one of the rows.
    [me] = [row for row in page.context["processes"] if row.process_id == processes.process_id()]
    assert me.alive and me.sockets == 0
    assert b"s ago" in page.content and b"gw-badge-bad" in page.content


def test_event_viewer_shows_a_channels_history_filtered_by_type_and_tails_it(staff_client):
    for n in range(3):
        publish_event("u1", "notif.job_updated", {"job_id": f"j{n}"})
    publish_event("u1", "msg.new", {"text": "<b>hi</b>"})

    page = staff_client.get(EVENTS, {"channel": user_channel("u1")})
    found = page.context["found"]
    assert found.seq == 4 and [row.seq for row in found.events] == [4, 3, 2, 1]
    assert found.types == ["msg.new", "notif.job_updated"]
    assert b"&lt;b&gt;hi&lt;/b&gt;" in page.content and b"<b>hi</b>" not in page.content
    only_notif = staff_client.get(EVENTS, {"channel": user_channel("u1"), "type": "notif."}).context["found"]
    assert [row.type for row in only_notif.events] == ["notif.job_updated"] * 3

    publish_event("u1", "msg.new", {"text": "later"})
    tail = staff_client.get(TAIL, {"channel": user_channel("u1"), "after": 4}).json()
    assert tail["seq"] == 5 and len(tail["rows"]) == 1 and 'data-seq="5"' in tail["rows"][0]


def test_dashboard_has_charts_linked_to_their_pages_and_plurals(staff_client):
    activity.record_rpc_call(code="INTERNAL", method="REGISTRY.ping")
    activity.flush()
    ListenerState.objects.create(worker_id="w1", uid="u1", kinds=["messages"], since=timezone.now())
    page = staff_client.get(DASHBOARD)
    charts = {chart["name"]: chart for chart in page.context["snapshot"]["charts"]}
    assert set(charts) == {"rpc_calls", "rpc_errors", "events", "sockets", "users_online", "listener_restarts"}
    assert charts["rpc_errors"]["last15"] == 1 and charts["rpc_errors"]["href"] == RPC
    text = " ".join(page.content.decode().split())
    assert 'class="gw-spark"' in text and "1 user on 1 worker" in text  # not "1 workers"
    stats = staff_client.get(STATS).json()
    assert stats["charts"][1]["svg60"].startswith("<svg")


@pytest.mark.parametrize("url", [RPC, WORKERS, EVENTS, TAIL, DASHBOARD])
def test_console_pages_need_staff_with_the_sessions_view_permission(client, django_user_model, url):
    assert client.get(url).status_code == 302  # anonymous: to the login page
    client.force_login(django_user_model.objects.create_user("plain-staff", password="pw", is_staff=True))
    assert client.get(url).status_code == 403


def _rows(count: int, start: int = 0) -> None:
    """``count`` more of everything the pages list: listener rows, workers, API clients with calls, failures, events."""
    now = timezone.now()
    ListenerState.objects.bulk_create(
        ListenerState(worker_id=f"w{n % 7}", uid=f"u{n}", kinds=["messages"], since=now, restarts=n % 3)
        for n in range(start, start + count)
    )
    for n in range(start, start + count):
        if n < 50:
            ownership.heartbeat(f"w{n}", {"users": n, "heartbeat_at": time.time()}, ttl_ms=30_000)
        activity.record_rpc_call(code="OK" if n % 2 else "INTERNAL", method="REGISTRY.ping", client=f"c{n}",
                                 trace_id=f"t{n}")
    for n in range(start, start + min(count, 300)):
        publish_event("u1", "notif.job_updated", {"n": n})
    activity.flush()
    processes.beat()


@pytest.mark.parametrize("url", [RPC, WORKERS, f"{EVENTS}?channel=user:u1", f"{TAIL}?channel=user:u1&after=0",
                                 DASHBOARD, STATS])
def test_constant_queries_with_10_and_1000_rows(staff_client, url):
    _rows(10)
    few = _queries(staff_client, url)
    _rows(990, start=10)
    assert ListenerState.objects.count() == 1000
    many = _queries(staff_client, url)
    assert many == few <= MAX_QUERIES, (few, many)


def test_readable_times():
    now = timezone.now()
    assert timefmt.relative(now - dt_seconds(12), now=now) == "12 s ago"
    assert timefmt.relative(now + dt_seconds(40), now=now) == "in 40 s"
    assert timefmt.relative(now - dt_seconds(125), now=now) == "2 min 05 s ago"
    assert timefmt.clock("2026-01-02T03:04:05Z") == "2026-01-02 03:04:05 UTC"
    assert timefmt.clock(0) == "1970-01-01 00:00:00 UTC" and timefmt.clock(None) == "—"


def dt_seconds(seconds: float):
    import datetime as dt

    return dt.timedelta(seconds=seconds)


def test_the_chroma_page_shows_its_three_times_in_one_format(staff_client):
    import re

    from chroma.services import register_collection_user

    register_collection_user(user_id="u1", collection_name="col1", session_id="s1")
    page = staff_client.get(reverse("admin:registry_chromaregistration_changelist"))
    cells = re.findall(r'<td class="gw-nowrap">(.*?)</td>', page.content.decode())
    assert len(cells) == 3, cells
    for cell in cells:  # registered at, last heartbeat, expires at: "<time title=date time UTC>time UTC</time> age"
        assert re.fullmatch(r'<time title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC">\d\d:\d\d:\d\d UTC</time> '
                            r'<span class="gw-quiet">.+</span>', cell), cell
    assert "expires in " in cells[2]


def test_dashboard_plurals_with_four_users_on_one_worker(staff_client):
    """Issue 19 listed "4 users on 1 workers"."""
    ListenerState.objects.bulk_create(ListenerState(worker_id="w1", uid=f"u{n}", kinds=["messages"],
                                                    since=timezone.now()) for n in range(4))
    text = " ".join(staff_client.get(DASHBOARD).content.decode().split())
    assert "4 users on 1 worker<" in text and "1 workers" not in text


@pytest.mark.parametrize("url", [DASHBOARD, RPC, reverse("admin:index"), reverse("admin:console-user", args=["u1"]),
                                 reverse("admin:registry_session_changelist")])
def test_every_console_page_has_a_favicon(staff_client, url):
    assert '<link rel="icon" type="image/svg+xml" href="data:image/svg+xml,' in staff_client.get(url).content.decode()
