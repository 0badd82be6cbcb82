"""The Chroma registrations page: Redis-backed rows, search by user, and the unregister action."""
from __future__ import annotations

import json

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.messages import get_messages
from django.urls import reverse

from chroma.selectors import list_collection_registrations
from chroma.services import register_collection_user
from registry import services

pytestmark = pytest.mark.django_db

URL = reverse("admin:registry_chromaregistration_changelist")


def _selected(user_id: str, collection: str) -> str:
    return json.dumps([user_id, collection])


def test_lists_registrations_with_their_session_state(staff_client):
    services.register_session(user_id="u1", session_id="s-live")
    register_collection_user(user_id="u1", collection_name="docs", session_id="s-live")
    register_collection_user(user_id="u2", collection_name="notes", session_id="s-unknown")

    page = staff_client.get(URL)

    assert page.status_code == 200
    rows = {
        (row["registration"].user_id, row["registration"].collection_name): row["session_state"]
        for row in page.context["rows"]
    }
    assert rows == {("u1", "docs"): "online", ("u2", "notes"): "not registered"}
    assert b"Unregister the selected registrations" in page.content
    only_u2 = staff_client.get(URL + "?q=u2")
    assert [r["registration"].collection_name for r in only_u2.context["rows"]] == ["notes"]


def test_unregister_action_removes_the_selected_registrations_and_logs_them(staff_client):
    register_collection_user(user_id="u1", collection_name="docs", session_id="s1")
    register_collection_user(user_id="u1", collection_name="keep", session_id="s1")

    response = staff_client.post(
        URL, {"action": "unregister", "_selected_action": [_selected("u1", "docs"), _selected("u9", "gone")]}
    )

    assert response.status_code == 302
    assert [r.collection_name for r in list_collection_registrations()] == ["keep"]
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "1 registration removed. 1 had already expired."
    ]
    entry = LogEntry.objects.get()
    assert (entry.action_flag, entry.object_id, entry.change_message) == (DELETION, "u1:docs", "Unregistered by staff.")


def test_posting_without_an_action_or_selection_changes_nothing(staff_client):
    register_collection_user(user_id="u1", collection_name="docs", session_id="s1")
    no_action = staff_client.post(URL, {"_selected_action": [_selected("u1", "docs")]}, follow=True)
    assert [str(m) for m in no_action.context["messages"]] == ["Choose an action."]
    no_selection = staff_client.post(URL, {"action": "unregister"}, follow=True)
    assert [str(m) for m in no_selection.context["messages"]] == ["No registration was selected."]
    assert len(list_collection_registrations()) == 1
    assert not LogEntry.objects.exists()


def test_view_only_staff_can_look_but_not_unregister(client, django_user_model):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_chromaregistration"))
    client.force_login(viewer)
    register_collection_user(user_id="u1", collection_name="docs", session_id="s1")

    page = client.get(URL)
    assert page.status_code == 200 and b"Unregister the selected" not in page.content
    assert client.post(URL, {"action": "unregister", "_selected_action": [_selected("u1", "docs")]}).status_code == 403
    assert len(list_collection_registrations()) == 1


def test_anonymous_visitors_are_sent_to_the_login_page(client):
    response = client.get(URL)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
