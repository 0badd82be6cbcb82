"""Every changelist runs a constant number of SQL queries (≤ 10), measured with 10 and with 1,000 rows."""
from __future__ import annotations


import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from chroma.services import register_collection_user
from realtime import presence
from registry import services
from registry.models import SessionRecord
from tests.registry.sessions import lapse
from workflows.models import ListenerState

pytestmark = pytest.mark.django_db

MAX_QUERIES = 10


def _sessions(count: int, start: int = 0) -> None:
    """Live sessions in Redis (a third lapsed), a seventh ended into the history, and some sockets."""
    for n in range(start, start + count):
        uid, sid = f"u{n % 400}", f"s{n}"
        services.register_session(user_id=uid, session_id=sid, authorized_companies=["c1"] if n % 2 else None)
        if n % 7 == 0:
            services.unregister_session(user_id=uid, session_id=sid)
        elif n % 3 == 0:
            lapse(uid, sid)
    services.flush_session_history()
    for n in range(start, start + count, 5):
        presence.join(f"u{n % 400}", presence.socket_member(f"sock{n}"))


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return len(captured)


@pytest.mark.parametrize("page, query", [
    ("session", ""), ("session", "?state=online"), ("session", "?state=expired"), ("session", "?q=u7"),
    ("session", "?q=s8"), ("sessionrecord", ""), ("sessionrecord", "?status__exact=closed"),
    ("sessionrecord", "?q=u7"), ("sessionrecord", "?o=5"),
])
def test_sessions_changelists(staff_client, page, query):
    url = reverse(f"admin:registry_{page}_changelist") + query
    _sessions(10)
    few = _queries(staff_client, url)
    _sessions(990, start=10)
    assert SessionRecord.objects.count() == 143
    many = _queries(staff_client, url)
    assert many == few <= MAX_QUERIES


def test_chroma_registrations_changelist(staff_client):
    url = reverse("admin:registry_chromaregistration_changelist")
    _sessions(20)
    for n in range(10):
        register_collection_user(user_id=f"u{n}", collection_name=f"col{n}", session_id=f"s{n}")
    few = _queries(staff_client, url)
    for n in range(10, 1000):
        register_collection_user(user_id=f"u{n}", collection_name=f"col{n}", session_id=f"s{n}")
    response = staff_client.get(url)
    assert len(response.context["rows"]) == 1000
    many = _queries(staff_client, url)
    assert many == few <= MAX_QUERIES


def _listener_states(count: int, start: int = 0) -> None:
    now = timezone.now()
    ListenerState.objects.bulk_create(
        ListenerState(worker_id=f"w{n % 3}", uid=f"u{n}", kinds=["messages", "notifications"], since=now,
                      last_event_at=now if n % 2 else None, restarts=n % 4)
        for n in range(start, start + count)
    )


@pytest.mark.parametrize("query", ["", "?worker_id=w1", "?q=u7", "?o=4"])
def test_active_listeners_changelist(staff_client, query):
    url = reverse("admin:workflows_listenerstate_changelist") + query
    _listener_states(10)
    few = _queries(staff_client, url)
    _listener_states(990, start=10)
    many = _queries(staff_client, url)
    assert many == few <= MAX_QUERIES


def test_session_history_detail_page(staff_client):
    _sessions(1000)
    url = reverse("admin:registry_sessionrecord_change", args=[SessionRecord.objects.first().pk])
    assert _queries(staff_client, url) <= MAX_QUERIES


def test_admin_index_and_dashboard(staff_client):
    _sessions(1000)
    _listener_states(1000)
    for url in (reverse("admin:index"), reverse("admin:dashboard"), reverse("admin:dashboard-stats")):
        assert _queries(staff_client, url) <= MAX_QUERIES, url
