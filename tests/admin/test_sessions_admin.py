"""The Sessions admin: filters, search, live socket counts, and the disconnect/expire actions."""
from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from realtime import presence
from registry import services
from registry.models import Session
from tests.conftest import wait_until
from tests.realtime.wsclient import close_code, open_ws

CHANGELIST = reverse("admin:registry_session_changelist")


def _register(uid: str, sid: str, **kwargs) -> Session:
    return services.register_session(user_id=uid, session_id=sid, **kwargs)


@pytest.mark.django_db
def test_filters_split_online_expired_and_closed(staff_client):
    _register("u1", "live")
    _register("u1", "lapsed")
    _register("u2", "gone")
    Session.objects.filter(session_id="lapsed").update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    services.unregister_session(session_id="gone")

    def shown(query: str) -> set[str]:
        response = staff_client.get(CHANGELIST + query)
        assert response.status_code == 200
        return {s.session_id for s in response.context["cl"].result_list}

    assert shown("?state=online") == {"live"}
    assert shown("?state=expired") == {"lapsed"}
    assert shown("?state=closed") == {"gone"}
    assert shown("") == {"live", "lapsed", "gone"}
    assert shown("?q=u1") == {"live", "lapsed"}
    assert shown("?q=gone") == {"gone"}


@pytest.mark.django_db
def test_changelist_shows_each_users_open_sockets(staff_client):
    _register("u1", "s1")
    _register("u2", "s2")
    presence.join("u1", presence.socket_member("sock-a"))
    presence.join("u1", presence.socket_member("sock-b"))

    response = staff_client.get(CHANGELIST)

    sockets = {s.session_id: s.live_sockets for s in response.context["cl"].result_list}
    assert sockets == {"s1": 2, "s2": 0}
    assert b"Sockets of user" in response.content
    assert response.content.count(b'<td class="field-sockets">2</td>') == 1


@pytest.mark.django_db
def test_rows_are_read_only(staff_client):
    session = _register("u1", "s1")
    change_url = reverse("admin:registry_session_change", args=[session.pk])
    page = staff_client.get(change_url)
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert staff_client.post(change_url, {"user_id": "someone-else"}).status_code == 403
    assert staff_client.get(reverse("admin:registry_session_add")).status_code == 403
    assert Session.objects.get().user_id == "u1"


@pytest.mark.django_db
def test_expire_action_ends_sessions_leaves_presence_and_is_logged(staff_client):
    first, second = _register("u1", "s1"), _register("u1", "s2")
    services.unregister_session(session_id="s2")

    response = staff_client.post(CHANGELIST, {"action": "expire", "_selected_action": [first.pk, second.pk]})

    assert response.status_code == 302
    assert Session.objects.get(session_id="s1").status == Session.Status.EXPIRED
    assert Session.objects.get(session_id="s2").status == Session.Status.CLOSED
    assert not presence.is_online("u1")
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    assert texts == ["1 session expired. 1 was already closed."]
    logged = LogEntry.objects.filter(action_flag=CHANGE, object_id__in=[str(first.pk), str(second.pk)])
    assert logged.count() == 2 and {entry.change_message for entry in logged} == {"Expired by staff."}


@pytest.mark.django_db(transaction=True)
def test_disconnect_action_closes_the_users_sockets_and_takes_the_user_offline(
    live_gateway, service_token, staff_client
):
    session = _register("u1", "s1")
    other = _register("u2", "s2")
    ws = open_ws(live_gateway, service_token, uid="u1")
    bystander = open_ws(live_gateway, service_token, uid="u2")
    wait_until(lambda: len(presence.live_members("u1")) == 2)

    response = staff_client.post(CHANGELIST, {"action": "disconnect", "_selected_action": [session.pk]})

    assert response.status_code == 302
    assert close_code(ws) == 4000
    wait_until(lambda: not presence.is_online("u1"), message="u1 still online after disconnect")
    assert Session.objects.get(pk=session.pk).status == Session.Status.CLOSED
    assert Session.objects.get(pk=other.pk).status == Session.Status.ONLINE
    assert presence.is_online("u2")
    bystander.ping().wait(5)  # the other user's socket is untouched
    bystander.close()
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    assert texts == ["1 session closed; sockets of 1 user disconnected."]
    entry = LogEntry.objects.get(object_id=str(session.pk))
    assert entry.action_flag == CHANGE and entry.change_message.startswith("Disconnected by staff")


@pytest.mark.django_db
def test_a_staff_user_without_the_change_permission_sees_no_actions(client, django_user_model):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_session", content_type__app_label="registry"))
    client.force_login(viewer)
    session = _register("u1", "s1")

    page = client.get(CHANGELIST)
    assert page.status_code == 200 and b'name="action"' not in page.content
    client.post(CHANGELIST, {"action": "expire", "_selected_action": [session.pk]})
    assert Session.objects.get().status == Session.Status.ONLINE
