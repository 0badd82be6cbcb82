"""The dashboard: linked from the admin index, live counts in the page and in the JSON it polls."""
from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from realtime import presence
from registry import services
from workflows.models import ListenerState

pytestmark = pytest.mark.django_db

DASHBOARD, STATS = reverse("admin:dashboard"), reverse("admin:dashboard-stats")


def test_admin_index_links_to_the_dashboard(staff_client):
    page = staff_client.get(reverse("admin:index"))
    assert page.status_code == 200
    assert f'href="{DASHBOARD}"'.encode() in page.content


def test_dashboard_shows_live_counts_and_polls_the_stats_endpoint(staff_client):
    services.register_session(user_id="u1", session_id="s1")
    presence.join("u1", presence.socket_member("sock-1"))
    presence.join("u2", presence.socket_member("sock-2"))
    ListenerState.objects.create(worker_id="w1", uid="u1", kinds=["messages", "notifications"], since=timezone.now())

    page = staff_client.get(DASHBOARD)
    assert page.status_code == 200
    snapshot = page.context["snapshot"]
    assert (snapshot["users_online"], snapshot["sockets"], snapshot["sessions"]["online"]) == (2, 2, 1)
    assert b'data-stat="users_online">2<' in page.content and b"<li>messages: 1</li>" in page.content
    assert STATS.encode() in page.content

    stats = staff_client.get(STATS).json()
    assert stats["users_online"] == 2 and stats["listeners"]["by_kind"] == {"messages": 1, "notifications": 1}
    assert stats["health"] == {"redis": "ok", "firestore": "ok", "rtdb": "ok", "chroma": "ok"}
    assert stats["generated_at"].endswith("Z")


def test_dashboard_needs_staff_with_the_sessions_view_permission(client, django_user_model):
    assert client.get(STATS).status_code == 302  # anonymous: to the login page
    client.force_login(django_user_model.objects.create_user("plain-staff", password="pw", is_staff=True))
    assert client.get(DASHBOARD).status_code == 403
    assert client.get(STATS).status_code == 403
