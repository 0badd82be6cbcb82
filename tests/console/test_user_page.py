"""The console's user page: what it shows about one uid (sessions, sockets, listeners and why attached, Chroma
registrations, channel seq and events, jobs), its actions (POST, CSRF, permissions, honest results), the prefix
search, and a constant number of SQL queries with 10 and 1,000 rows."""
from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from chroma.services import register_collection_user
from jobs import store as job_store
from realtime import presence
from realtime.channels import user_channel
from realtime.publisher import publish_event
from registry import services
from registry.models import SessionRecord
from tests.conftest import wait_until
from tests.realtime.wsclient import close_code, open_ws
from tests.registry.sessions import lapse
from workflows.models import ListenerState
from workflows.ownership import lease_key

pytestmark = pytest.mark.django_db

SEARCH = reverse("admin:console-search")
MAX_QUERIES = 10


def user_url(uid: str) -> str:
    return reverse("admin:console-user", args=[uid])


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_the_page_shows_everything_about_the_user(staff_client, stack):
    services.register_session(user_id="u1", session_id="s-live", authorized_companies=["acme"])
    services.register_session(user_id="u1", session_id="s-lapsed")
    lapse("u1", "s-lapsed")
    services.register_session(user_id="u1", session_id="s-closed")
    services.unregister_session(user_id="u1", session_id="s-closed")
    services.flush_session_history()
    presence.join("u1", presence.socket_member("sock-1"))
    presence.join("u1", presence.socket_member("sock-2", presence.ChatInterest("sp", "t1", "chats")))
    stack.redis_client().set(lease_key("u1"), "w1", px=60_000)
    ListenerState.objects.create(worker_id="w1", uid="u1", kinds=["messages", "notifications"],
                                 since=timezone.now(), restarts=2)
    register_collection_user(user_id="u1", collection_name="docs", session_id="s-live")
    published = publish_event("u1", "notif.job_updated", {"job_id": "j1"})
    job_store.create(uid="u1", job_id="job-1", name="export", params={})
    job_store.create(uid="u2", job_id="job-2", name="export", params={})

    response = staff_client.get(user_url("u1"))

    assert response.status_code == 200
    page = response.context["page"]
    assert [(row.info.session_id, row.state) for row in page.sessions] == [("s-live", "online"),
                                                                           ("s-lapsed", "expired")]
    assert [record.session_id for record in page.ended_sessions] == ["s-closed"]
    # A lapsed session's presence member lives until its own TTL (the sweeper ends both): it still counts.
    assert sorted((m.kind, m.ident) for m in page.members) == [
        ("chat socket", "sock-2 → sp / t1 / chats"), ("session", "s-lapsed"), ("session", "s-live"),
        ("socket", "sock-1")]
    assert page.listeners.owner == "w1" and [row.restarts for row in page.listeners.rows] == [2]
    assert sorted((why.reason, why.detail) for why in page.listeners.reasons) == [
        ("chat socket", "sock-2 → sp / t1 / chats"), ("session", "s-lapsed"), ("session", "s-live"),
        ("socket", "sock-1")]
    assert [r.collection_name for r in page.registrations] == ["docs"]
    assert page.events.seq == published.seq and page.events.events[0].type == "notif.job_updated"
    assert [job.job_id for job in page.jobs] == ["job-1"]
    text = response.content.decode()
    assert "expires in " in text and 'href="/admin/console/events/?channel=user%3Au1"' in text
    assert 'id="session-s-live"' in text and 'value="disconnect"' in text


def test_listeners_of_an_offline_user_are_in_their_grace_period(staff_client, stack):
    stack.redis_client().set(lease_key("u1"), "w1", px=60_000)
    ListenerState.objects.create(worker_id="w1", uid="u1", kinds=["messages"], since=timezone.now())

    reasons = staff_client.get(user_url("u1")).context["page"].listeners.reasons

    assert [why.reason for why in reasons] == ["grace"] and "60 s" in reasons[0].detail


def test_a_uid_nobody_knows_says_so(staff_client):
    response = staff_client.get(user_url("nobody"))
    assert response.status_code == 200 and "nothing is known about this uid" in response.content.decode()


def test_disconnect_on_a_user_with_nothing_live_is_refused_and_changes_nothing(staff_client):
    services.register_session(user_id="u1", session_id="s1")
    services.unregister_session(user_id="u1", session_id="s1")

    response = staff_client.post(user_url("u1"), {"action": "disconnect"})

    assert response.status_code == 302 and response["Location"] == user_url("u1")
    assert _messages(response) == ["Nothing to disconnect: u1 has no live session and no open socket."]


@pytest.mark.django_db(transaction=True)
def test_disconnect_closes_the_users_sessions_and_sockets_and_says_so(live_gateway, service_token, staff_client):
    services.register_session(user_id="u1", session_id="s1")
    services.register_session(user_id="u2", session_id="s2")
    ws = open_ws(live_gateway, service_token, uid="u1")
    bystander = open_ws(live_gateway, service_token, uid="u2")
    wait_until(lambda: len(presence.live_members("u1")) == 2)

    response = staff_client.post(user_url("u1"), {"action": "disconnect"})

    assert _messages(response) == ["1 session closed; 1 socket disconnected."]
    assert close_code(ws) == 4000
    assert not presence.is_online("u1") and presence.is_online("u2")
    bystander.ping().wait(5)
    bystander.close()
    entry = LogEntry.objects.get()
    assert entry.object_id == "u1/*" and entry.change_message == "Disconnect of the user by staff: done."


def test_resync_and_restart_without_a_worker_are_refused(staff_client):
    services.register_session(user_id="u1", session_id="s1")
    assert _messages(staff_client.post(user_url("u1"), {"action": "resync"})) == [
        "No listeners are attached for u1; nothing to re-sync (is the user online?)."]
    assert _messages(staff_client.post(user_url("u1"), {"action": "restart"}))[-1] == (
        "No live worker holds u1's listeners; nothing restarted.")


def test_actions_need_a_post_with_csrf_and_the_right_permission(django_user_model):
    services.register_session(user_id="u1", session_id="s1")
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename="view_session"))
    client = Client(enforce_csrf_checks=True)
    client.force_login(viewer)
    page = client.get(user_url("u1"))
    assert page.status_code == 200 and 'name="action"' not in page.content.decode()  # no button it may not press
    assert client.post(user_url("u1"), {"action": "disconnect"}).status_code == 403  # no CSRF token
    token = client.cookies["csrftoken"].value
    assert client.post(user_url("u1"), {"action": "disconnect", "csrfmiddlewaretoken": token}).status_code == 403
    assert services.store.user_sessions("u1")  # untouched


def test_prefix_search_over_uids_and_session_ids(staff_client):
    for uid, sid in [("alice", "sa-1"), ("alina", "sb-1"), ("bob", "alpha-7")]:
        services.register_session(user_id=uid, session_id=sid)
    presence.join("alfred", presence.socket_member("sock-1"))  # sockets only, no session

    found = staff_client.get(SEARCH, {"q": "al"}).context["found"]

    assert found.uids == ["alfred", "alice", "alina"] and found.sessions == [("bob", "alpha-7")] and found.complete
    only = staff_client.get(SEARCH, {"q": "sb-"})  # one user: straight to its page
    assert only.status_code == 302 and only["Location"] == user_url("alina")
    assert staff_client.get(SEARCH, {"q": "a*"}).context["found"].uids == []  # glob characters match literally


def test_every_uid_and_session_id_in_the_redis_changelists_links_to_the_user_page(staff_client):
    services.register_session(user_id="u1", session_id="s1")
    register_collection_user(user_id="u1", collection_name="docs", session_id="s1")
    job_store.create(uid="u1", job_id="job-1", name="export", params={})
    ListenerState.objects.create(worker_id="w1", uid="u1", kinds=["messages"], since=timezone.now())
    for name in ("registry_session", "registry_chromaregistration", "jobs_job", "workflows_listenerstate",
                 "registry_sessionrecord"):
        text = staff_client.get(reverse(f"admin:{name}_changelist")).content.decode()
        if name == "registry_sessionrecord":
            services.unregister_session(user_id="u1", session_id="s1")
            services.flush_session_history()
            text = staff_client.get(reverse(f"admin:{name}_changelist")).content.decode()
        assert f'href="{user_url("u1")}"' in text, name
        if name in ("registry_session", "registry_chromaregistration", "registry_sessionrecord"):
            assert f'href="{user_url("u1")}#session-s1"' in text, name
    events = staff_client.get(reverse("admin:console-events"), {"channel": user_channel("u1")}).content.decode()
    assert f'href="{user_url("u1")}"' in events


def _rows(count: int, start: int = 0) -> None:
    """``count`` more of everything the page lists for u1: sessions (some ended), listener rows of other users,
    registrations, events and jobs."""
    for n in range(start, start + count):
        services.register_session(user_id="u1", session_id=f"s{n}")
        if n % 3 == 0:
            services.unregister_session(user_id="u1", session_id=f"s{n}")
        register_collection_user(user_id="u1", collection_name=f"c{n}", session_id=f"s{n}")
        job_store.create(uid="u1", job_id=f"job-{n}", name="export", params={})
        publish_event("u1", "notif.job_updated", {"n": n})
    services.flush_session_history()
    ListenerState.objects.bulk_create(ListenerState(worker_id=f"w{n % 5}", uid=f"other-{n}", since=timezone.now())
                                      for n in range(start, start + count))


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured)


def test_constant_queries_with_10_and_1000_rows(staff_client, stack):
    stack.redis_client().set(lease_key("u1"), "w1", px=60_000)
    ListenerState.objects.create(worker_id="w1", uid="u1", kinds=["messages"], since=timezone.now())
    _rows(10)
    few = _queries(staff_client, user_url("u1"))
    _rows(990, start=10)
    assert SessionRecord.objects.filter(user_id="u1").count() == 334
    many = _queries(staff_client, user_url("u1"))
    assert many == few <= MAX_QUERIES, (few, many)


@pytest.mark.parametrize("url", [user_url("u1"), SEARCH + "?q=u"])
def test_the_user_page_and_search_need_staff_with_the_sessions_view_permission(client, django_user_model, url):
    assert client.get(url).status_code == 302  # anonymous: to the login page
    client.force_login(django_user_model.objects.create_user("plain-staff", password="pw", is_staff=True))
    assert client.get(url).status_code == 403
    assert client.post(user_url("u1"), {"action": "disconnect"}).status_code == 403
