"""API clients: bearer auth and namespaces, the admin (token shown once, revoke), and manage.py create_api_client."""
from __future__ import annotations

import hashlib
import json
from io import StringIO

import pytest
import redis
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from rpc.models import ApiClient
from rpc.services import api_client_create, api_client_revoke

from .methods_for_tests import runs


# --- authentication ----------------------------------------------------------------------------------------------------
def test_api_client_token_authenticates_within_its_namespaces(rpc, api_client_factory):
    _, token = api_client_factory(namespaces=["REGISTRY"])
    assert rpc("REGISTRY.ping", token=token).data == {"pong": True}
    denied = rpc("RPCTEST.echo", 1, token=token)
    assert denied.status == 403 and denied.code == "PERMISSION_DENIED"


def test_star_grants_every_namespace(rpc, api_client_factory):
    _, token = api_client_factory(namespaces=["*"])
    assert rpc("RPCTEST.echo", 1, token=token).data == {"value": 1}


def test_an_api_client_gets_replies_only_under_its_own_id(rpc, api_client_factory, stack):
    client, token = api_client_factory(namespaces=["REGISTRY"])
    other, _ = api_client_factory(namespaces=["REGISTRY"])
    subscriber = redis.Redis(port=stack.redis_port).pubsub()
    subscriber.psubscribe("redis:reply:*")
    assert subscriber.get_message(timeout=5)["type"] == "psubscribe"
    try:
        for channel in ["redis:reply:test-session", f"redis:reply:{other.pk}:s1", f"redis:reply:{client.pk}"]:
            refused = rpc("REGISTRY.ping", token=token, reply_to=channel)
            assert refused.status == 400 and refused.code == "INVALID_REQUEST", channel
        accepted = rpc("REGISTRY.ping", token=token, reply_to=f"redis:reply:{client.pk}:s1")
        assert accepted.status == 200
        message = subscriber.get_message(timeout=10)
        assert message["channel"] == f"redis:reply:{client.pk}:s1".encode() and message["data"] == accepted.raw
    finally:
        subscriber.close()


def test_revoked_client_is_unauthenticated_at_once(rpc, api_client_factory):
    client, token = api_client_factory()
    assert rpc("REGISTRY.ping", token=token).status == 200
    api_client_revoke(client=client)
    result = rpc("REGISTRY.ping", token=token)
    assert result.status == 401 and result.code == "UNAUTHENTICATED"


def test_token_lookups_are_cached_and_a_revocation_elsewhere_is_effective_within_one_second(
    rpc, api_client_factory, django_assert_num_queries
):
    """No SQL per call: the lookup is cached per process for rpc.token_cache.TTL_S. A revocation made by another
    process (here: an UPDATE that bypasses this process's cache) is refused within 1 s."""
    import time

    from rpc.auth import authenticate
    from tests.conftest import wait_until

    client, token = api_client_factory()
    authenticate(token)
    with django_assert_num_queries(0):
        for _ in range(100):
            assert authenticate(token).client.pk == client.pk
    assert rpc("REGISTRY.ping", token=token).status == 200
    ApiClient.objects.filter(pk=client.pk).update(revoked_at=timezone.now())
    revoked_at = time.monotonic()
    wait_until(lambda: rpc("REGISTRY.ping", token=token).status == 401, timeout=5, interval=0.01)
    assert time.monotonic() - revoked_at < 1.0


def test_token_is_stored_only_as_its_hash(api_client_factory):
    client, token = api_client_factory()
    stored = ApiClient.objects.get(pk=client.pk)
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in json.dumps([str(v) for v in stored.__dict__.values()])
    assert token.startswith(f"gwk_{stored.token_prefix}_")


def test_a_tampered_token_with_a_valid_prefix_is_refused(rpc, api_client_factory):
    _, token = api_client_factory()
    assert rpc("REGISTRY.ping", token=token[:-2] + ("AA" if not token.endswith("AA") else "BB")).status == 401


def test_last_used_is_recorded(rpc, api_client_factory):
    client, token = api_client_factory()
    assert client.last_used_at is None
    rpc("REGISTRY.ping", token=token)
    client.refresh_from_db()
    assert client.last_used_at is not None and (timezone.now() - client.last_used_at).total_seconds() < 60


def test_idempotency_keys_are_scoped_per_api_client(rpc, api_client_factory, marker, service_token):
    _, first_token = api_client_factory()
    _, second_token = api_client_factory()
    for token in (first_token, second_token, service_token):
        assert rpc("RPCTEST.count_call", marker, idempotency_key="shared-key", token=token).status == 200
    assert runs(marker) == 3


def test_methods_catalogue_lists_only_granted_namespaces(api_client_factory):
    _, token = api_client_factory(namespaces=["REGISTRY"])
    body = Client().get("/rpc/methods", HTTP_AUTHORIZATION=f"Bearer {token}").json()
    assert {m["method"].split(".")[0] for m in body["data"]["methods"]} == {"REGISTRY"}


def test_unknown_namespaces_are_refused_at_creation(transactional_db):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        api_client_create(name="bad", namespaces=["NOPE"])


# --- admin -----------------------------------------------------------------------------------------------------------
@pytest.fixture
def staff_client(db) -> Client:
    user = get_user_model().objects.create_superuser("staff", "staff@example.com", "pw-for-tests-only")
    client = Client()
    client.force_login(user)
    client.user = user
    return client


def test_admin_creates_a_client_and_shows_its_token_once(staff_client):
    response = staff_client.post("/admin/rpc/apiclient/add/", {"name": "reflex", "namespaces": ["REGISTRY", "RPCTEST"]},
                                 follow=True)
    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    client = ApiClient.objects.get(name="reflex")
    (token_message,) = [m for m in messages if "shown only this once" in m]
    token = token_message.split("<code>")[1].split("</code>")[0]
    assert hashlib.sha256(token.encode()).hexdigest() == client.token_hash
    assert client.namespaces == ["REGISTRY", "RPCTEST"] and client.created_by == staff_client.user
    change_page = staff_client.get(f"/admin/rpc/apiclient/{client.pk}/change/").content.decode()
    assert token not in change_page and client.token_hash not in change_page
    assert client.token_prefix in change_page  # the prefix identifies the token, read-only
    assert 'name="token_prefix"' not in change_page


def test_the_one_time_token_never_travels_in_a_cookie(staff_client):
    response = staff_client.post("/admin/rpc/apiclient/add/", {"name": "cookie-check", "namespaces": ["REGISTRY"]})
    assert response.status_code == 302 and ApiClient.objects.filter(name="cookie-check").exists()
    # Django's default message storage puts the message (and so the token, merely signed) in a "messages" cookie.
    assert not (response.cookies.get("messages") and response.cookies["messages"].value)
    assert "messages" not in staff_client.cookies or not staff_client.cookies["messages"].value


def test_admin_offers_registered_namespaces_and_refuses_others(staff_client):
    page = staff_client.get("/admin/rpc/apiclient/add/").content.decode()
    assert 'value="REGISTRY"' in page and 'value="RPCTEST"' in page and 'value="*"' in page
    response = staff_client.post("/admin/rpc/apiclient/add/", {"name": "x", "namespaces": ["NOPE"]})
    assert response.status_code == 200 and not ApiClient.objects.filter(name="x").exists()


def test_admin_revoke_action_gives_feedback_and_is_logged(staff_client):
    first, _ = api_client_create(name="one", namespaces=["REGISTRY"])
    second, _ = api_client_create(name="two", namespaces=["REGISTRY"])
    api_client_revoke(client=second)
    response = staff_client.post(
        "/admin/rpc/apiclient/", {"action": "revoke", "_selected_action": [first.pk, second.pk]}, follow=True
    )
    messages = [str(m) for m in response.context["messages"]]
    assert "Revoked 1 API client." in messages
    assert "1 API client was already revoked." in messages
    first.refresh_from_db()
    assert first.revoked_at is not None
    entry = LogEntry.objects.get(object_id=str(first.pk), action_flag=CHANGE)
    assert entry.user == staff_client.user and "Revoked" in entry.get_change_message()
    assert not LogEntry.objects.filter(object_id=str(second.pk), action_flag=CHANGE).exists()


def test_admin_changelist_shows_last_used_and_is_a_constant_number_of_queries(
    staff_client, django_assert_max_num_queries
):
    user = staff_client.user
    ApiClient.objects.bulk_create(
        ApiClient(name=f"client-{n:04d}", token_prefix=f"{n:012x}", token_hash="0" * 64, namespaces=["REGISTRY"],
                  created_by=user, last_used_at=timezone.now() if n % 2 else None)
        for n in range(1000)
    )
    with django_assert_max_num_queries(10):
        response = staff_client.get("/admin/rpc/apiclient/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Last used at" in page and "client-0000" in page and "1000 API clients" in page


# --- manage.py create_api_client ----------------------------------------------------------------------------------------
def test_command_creates_a_client_and_prints_its_token_once(db):
    out = StringIO()
    call_command("create_api_client", "reflex-prod", "--namespaces", "REGISTRY,RPCTEST", stdout=out)
    text = out.getvalue()
    client = ApiClient.objects.get(name="reflex-prod")
    token = text.strip().splitlines()[-1]
    assert hashlib.sha256(token.encode()).hexdigest() == client.token_hash
    assert client.namespaces == ["REGISTRY", "RPCTEST"]


def test_command_json_output(db):
    out = StringIO()
    call_command("create_api_client", "scripted", "--namespaces", "*", "--json", stdout=out)
    printed = json.loads(out.getvalue())
    client = ApiClient.objects.get(name="scripted")
    assert printed["id"] == client.pk and printed["namespaces"] == ["*"]
    assert hashlib.sha256(printed["token"].encode()).hexdigest() == client.token_hash


def test_command_refuses_unknown_namespaces_and_duplicate_names(db):
    with pytest.raises(CommandError, match="NOPE"):
        call_command("create_api_client", "x", "--namespaces", "NOPE", stdout=StringIO())
    call_command("create_api_client", "dup", "--namespaces", "REGISTRY", stdout=StringIO())
    with pytest.raises(CommandError, match="name"):
        call_command("create_api_client", "dup", "--namespaces", "REGISTRY", stdout=StringIO())
    assert ApiClient.objects.count() == 1


# --- binding to users (README, Security: rule 1) ------------------------------------------------------------------------
def test_a_client_bound_to_users_acts_only_for_them(rpc, api_client_factory, marker):
    client, token = api_client_factory(namespaces=["RPCTEST", "REGISTRY"])
    client.bound_users = ["alice"]
    client.save(update_fields=["bound_users"])
    assert rpc("RPCTEST.echo", 1, token=token, user_id="alice").data == {"value": 1}
    for outsider in ({"user_id": "bob"}, {}):  # no user_id is outside the binding too (fail closed)
        denied = rpc("RPCTEST.count_call", marker, token=token, idempotency_key=f"k-{marker}", **outsider)
        assert denied.status == 403 and denied.code == "PERMISSION_DENIED"
    assert runs(marker) == 0  # refused before the call


def test_the_command_and_the_admin_bind_a_client_to_users(db, staff_client):
    out = StringIO()
    call_command("create_api_client", "bound", "--namespaces", "REGISTRY", "--users", "u2, u1", "--companies", "co-1",
                 "--json", stdout=out)
    assert json.loads(out.getvalue())["bound_users"] == ["u1", "u2"]
    assert json.loads(out.getvalue())["bound_companies"] == ["co-1"]
    assert ApiClient.objects.get(name="bound").bound_users == ["u1", "u2"]
    staff_client.post("/admin/rpc/apiclient/add/", {"name": "bound-admin", "namespaces": ["REGISTRY"],
                                                    "bound_users": "u9\nu8, u9", "bound_companies": "co-2"})
    assert ApiClient.objects.get(name="bound-admin").bound_users == ["u8", "u9"]
    assert ApiClient.objects.get(name="bound-admin").bound_companies == ["co-2"]


def test_a_client_bound_to_companies_acts_only_for_their_users(rpc, api_client_factory):
    from core import tenancy
    from core.integrations.firebase import get_firestore

    get_firestore().document("clients/staff-a/bo_clients/c1/mandates/m1").set({"contact_space_id": "co-bound"})
    get_firestore().document("clients/staff-b/bo_clients/c1/mandates/m1").set({"contact_space_id": "co-other"})
    for uid in ("staff-a", "staff-b"):
        tenancy.forget_user_spaces(uid)
    client, token = api_client_factory(namespaces=["RPCTEST"])
    client.bound_companies = ["co-bound"]
    client.save(update_fields=["bound_companies"])
    assert rpc("RPCTEST.echo", 1, token=token, user_id="staff-a").data == {"value": 1}
    for outsider in ({"user_id": "staff-b"}, {"user_id": "nobody"}, {}):
        denied = rpc("RPCTEST.echo", 1, token=token, **outsider)
        assert denied.status == 403 and denied.code == "PERMISSION_DENIED", outsider
