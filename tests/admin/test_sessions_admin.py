"""The live sessions admin (Redis): state filter, search, live socket counts, the disconnect/expire actions; and the
ended-sessions history (SQL)."""
from __future__ import annotations

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.messages import get_messages
from django.urls import reverse

from realtime import presence
from realtime.control import disconnect_user_sockets
from registry import services, store
from registry.models import Session, SessionRecord
from tests.conftest import wait_until
from tests.realtime.wsclient import close_code, open_ws
from tests.registry.sessions import lapse

CHANGELIST = reverse("admin:registry_session_changelist")
HISTORY = reverse("admin:registry_sessionrecord_changelist")


def _register(uid: str, sid: str, **kwargs) -> str:
    services.register_session(user_id=uid, session_id=sid, **kwargs)
    return Session.key_of(uid, sid)


def _shown(client, query: str) -> set[str]:
    response = client.get(CHANGELIST + query)
    assert response.status_code == 200
    return {row["session"].session_id for row in response.context["rows"]}


@pytest.mark.django_db
def test_state_filter_and_search_over_live_and_lapsed_sessions(staff_client):
    _register("u1", "live")
    _register("u1", "lapsed")
    _register("u2", "gone")
    _register("u3", "other-live")
    lapse("u1", "lapsed")
    services.unregister_session(user_id="u2", session_id="gone")

    assert _shown(staff_client, "?state=online") == {"live", "other-live"}
    assert _shown(staff_client, "?state=expired") == {"lapsed"}
    assert _shown(staff_client, "") == {"live", "lapsed", "other-live"}
    assert _shown(staff_client, "?q=u1") == {"live", "lapsed"}
    assert _shown(staff_client, "?q=other-live") == {"other-live"}
    assert _shown(staff_client, "?q=u1&state=online") == {"live"}


@pytest.mark.django_db
def test_ended_sessions_are_in_the_history_page(staff_client):
    _register("u1", "kept")
    _register("u2", "gone")
    services.unregister_session(user_id="u2", session_id="gone")
    services.flush_session_history()

    def shown(query: str) -> set[str]:
        response = staff_client.get(HISTORY + query)
        assert response.status_code == 200
        return {record.session_id for record in response.context["cl"].result_list}

    assert shown("") == {"gone"}
    assert shown("?status__exact=closed") == {"gone"} and shown("?status__exact=expired") == set()
    assert shown("?q=u2") == {"gone"} and shown("?q=u1") == set()
    record = SessionRecord.objects.get()
    detail = staff_client.get(reverse("admin:registry_sessionrecord_change", args=[record.pk]))
    assert detail.status_code == 200 and b'name="_save"' not in detail.content
    assert staff_client.get(reverse("admin:registry_sessionrecord_add")).status_code == 403


@pytest.mark.django_db
def test_changelist_shows_each_users_open_sockets(staff_client):
    _register("u1", "s1")
    _register("u2", "s2")
    presence.join("u1", presence.socket_member("sock-a"))
    presence.join("u1", presence.socket_member("sock-b"))

    response = staff_client.get(CHANGELIST)

    sockets = {row["session"].session_id: row["sockets"] for row in response.context["rows"]}
    assert sockets == {"s1": 2, "s2": 0}
    assert b"Sockets of user" in response.content
    assert response.content.count(b'<td class="field-sockets">2</td>') == 1


@pytest.mark.django_db
def test_live_sessions_have_no_edit_or_add_page(staff_client):
    _register("u1", "s1")
    assert staff_client.get(CHANGELIST + "u1%2Fs1/change/").status_code == 404
    assert staff_client.get(CHANGELIST + "add/").status_code == 404
    assert [s.user_id for s in store.user_sessions("u1")] == ["u1"]


@pytest.mark.django_db
def test_expire_action_ends_sessions_leaves_presence_and_is_logged(staff_client):
    first, second = _register("u1", "s1"), _register("u1", "s2")
    services.unregister_session(user_id="u1", session_id="s2")

    response = staff_client.post(CHANGELIST, {"action": "expire", "_selected_action": [first, second]})

    assert response.status_code == 302
    assert store.user_sessions("u1") == []
    services.flush_session_history()
    assert dict(SessionRecord.objects.values_list("session_id", "status")) == {"s1": "expired", "s2": "closed"}
    assert not presence.is_online("u1")
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    assert texts == ["1 session expired. 1 had already ended."]
    logged = LogEntry.objects.filter(action_flag=CHANGE, object_id__in=[first, second])
    assert logged.count() == 2 and {entry.change_message for entry in logged} == {"Expired by staff."}


@pytest.mark.django_db(transaction=True)
def test_disconnect_action_closes_the_users_sockets_and_takes_the_user_offline(
    live_gateway, service_token, staff_client
):
    session = _register("u1", "s1")
    _register("u2", "s2")
    ws = open_ws(live_gateway, service_token, uid="u1")
    bystander = open_ws(live_gateway, service_token, uid="u2")
    wait_until(lambda: len(presence.live_members("u1")) == 2)

    response = staff_client.post(CHANGELIST, {"action": "disconnect", "_selected_action": [session]})

    assert response.status_code == 302
    assert close_code(ws) == 4000
    wait_until(lambda: not presence.is_online("u1"), message="u1 still online after disconnect")
    assert store.user_sessions("u1") == []
    assert [s.session_id for s in store.user_sessions("u2")] == ["s2"]
    assert presence.is_online("u2")
    bystander.ping().wait(5)  # the other user's socket is untouched
    bystander.close()
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    assert texts == ["1 session closed; sockets of 1 user disconnected."]
    entry = LogEntry.objects.get(object_id=session)
    assert entry.action_flag == CHANGE and entry.change_message.startswith("Disconnected by staff")
    services.flush_session_history()
    assert SessionRecord.objects.get().status == "closed"


@pytest.mark.django_db(transaction=True)
def test_disconnect_on_a_closed_session_is_refused_and_leaves_the_users_other_sockets_open(
    live_gateway, service_token, staff_client
):
    """Issue 19: it said "0 sessions closed; sockets of 1 user disconnected" and closed the user's live sockets."""
    stale = _register("u1", "s-old")
    services.unregister_session(user_id="u1", session_id="s-old")  # closed since the page was loaded
    _register("u1", "s-new")
    ws = open_ws(live_gateway, service_token, uid="u1")
    barrier = open_ws(live_gateway, service_token, uid="u9")
    wait_until(lambda: len(presence.live_members("u1")) == 2)

    response = staff_client.post(CHANGELIST, {"action": "disconnect", "_selected_action": [stale]})

    texts = [str(m) for m in get_messages(response.wsgi_request)]
    assert texts == ["1 session had already ended: nothing done for it (its user's sockets stay open)."]
    # Control messages reach the gateway in order on one subscription: once u9's socket is closed, a disconnect
    # of u1 sent by the action would have been handled already.
    disconnect_user_sockets("u9")
    assert close_code(barrier) == 4000
    ws.ping().wait(5)  # still open
    assert [s.session_id for s in store.user_sessions("u1")] == ["s-new"] and presence.is_online("u1")
    assert len(presence.live_members("u1")) == 2
    assert not LogEntry.objects.exists()
    ws.close()


@pytest.mark.django_db(transaction=True)
def test_disconnect_of_a_live_and_a_closed_session_acts_on_the_live_one_and_warns_about_the_other(staff_client):
    live = _register("u1", "s1")
    stale = _register("u2", "s2")
    services.unregister_session(user_id="u2", session_id="s2")

    response = staff_client.post(CHANGELIST, {"action": "disconnect", "_selected_action": [live, stale]})

    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "1 session closed; sockets of 1 user disconnected.",
        "1 session had already ended: nothing done for it (its user's sockets stay open).",
    ]
    assert store.user_sessions("u1") == [] and list(LogEntry.objects.values_list("object_id", flat=True)) == [live]


@pytest.mark.django_db
def test_a_staff_user_without_the_change_permission_sees_no_actions(client, django_user_model):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_session", content_type__app_label="registry"))
    client.force_login(viewer)
    session = _register("u1", "s1")

    page = client.get(CHANGELIST)
    assert page.status_code == 200 and b'name="action"' not in page.content
    assert client.post(CHANGELIST, {"action": "expire", "_selected_action": [session]}).status_code == 403
    assert [s.session_id for s in store.user_sessions("u1")] == ["s1"]
