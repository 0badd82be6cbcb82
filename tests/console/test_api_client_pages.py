"""API client pages: calls and errors over the last hour per client, Revoke on the change page, constant queries."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from core import activity
from rpc.models import ApiClient
from rpc.services import api_client_create

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:rpc_apiclient_changelist")


def _clients(count: int, start: int = 0) -> list[ApiClient]:
    clients = [api_client_create(name=f"client-{n}", namespaces=["REGISTRY", "FIREBASE_MANAGEMENT"])[0]
               for n in range(start, start + count)]
    for client in clients:
        activity.record_rpc_call(code="OK", method="REGISTRY.ping", client=f"c{client.pk}")
    activity.flush()
    return clients


def test_change_page_shows_calls_and_errors_and_revokes(staff_client):
    [client] = _clients(1)
    activity.record_rpc_call(code="INTERNAL", method="REGISTRY.ping", client=f"c{client.pk}")
    activity.flush()
    change = reverse("admin:rpc_apiclient_change", args=[client.pk])
    page = staff_client.get(change)
    assert b"Calls / errors (last hour)" in page.content and b'2 / <span style="color:#a33">1</span>' in page.content
    assert b'id="revoke-api-client"' in page.content

    assert staff_client.get(reverse("admin:rpc_apiclient_revoke", args=[client.pk])).status_code == 405
    response = staff_client.post(reverse("admin:rpc_apiclient_revoke", args=[client.pk]), follow=True)
    assert [str(m) for m in response.context["messages"]] == [
        "Revoked API client “client-0”: its token stopped working."]
    client.refresh_from_db()
    assert client.revoked_at is not None and b'id="revoke-api-client"' not in response.content
    again = staff_client.post(reverse("admin:rpc_apiclient_revoke", args=[client.pk]), follow=True)
    assert [str(m) for m in again.context["messages"]] == ["API client “client-0” was already revoked."]


def test_changelist_queries_are_constant_with_10_and_1000_clients(staff_client):
    _clients(10)
    with CaptureQueriesContext(connection) as few:
        first = staff_client.get(CHANGELIST)
    assert first.status_code == 200 and len(first.context["cl"].result_list) == 10
    # Namespace names never wrap mid-word (base_site.html's nowrap on this column and on the form's checkboxes).
    assert b'<td class="field-namespace_list">FIREBASE_MANAGEMENT, REGISTRY</td>' in first.content
    ApiClient.objects.bulk_create(ApiClient(name=f"bulk-{n}", namespaces=["REGISTRY"], token_prefix=f"p{n}",
                                            token_hash=f"h{n}") for n in range(990))
    with CaptureQueriesContext(connection) as many:
        page = staff_client.get(CHANGELIST)
    assert page.status_code == 200 and page.context["cl"].result_count == 1000
    assert len(many) == len(few) <= 10, (len(few), len(many))
