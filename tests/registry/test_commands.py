"""manage.py cleanup_registry, gateway_status and resync_user: --help, human and --json output, exit status."""
from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from django.core.management import call_command, get_commands, load_command_class
from django.core.management.base import CommandError
from django.utils import timezone

from chroma.services import register_collection_user
from core import activity
from core.integrations.redis import subscriber_count
from realtime import presence
from registry import services
from registry.models import SessionRecord
from tests.conftest import wait_until
from tests.registry.sessions import lapse
from workflows.models import ListenerState
from workflows.ownership import control_channel, lease_key

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize(
    "name, expected",
    [("cleanup_registry", ["--retention-days", "--json", "--dry-run"]), ("gateway_status", ["--json"]),
     ("resync_user", ["uid", "--json"])],
)
def test_every_command_documents_itself(name, expected):
    text = load_command_class(get_commands()[name], name).create_parser("manage.py", name).format_help()
    assert all(option in text for option in expected)
    assert len(load_command_class(get_commands()[name], name).help) > 60


def test_cleanup_registry_reports_what_it_did():
    services.register_session(user_id="u1", session_id="lapsed")
    lapse("u1", "lapsed")

    planned = json.loads(run("cleanup_registry", "--json", "--dry-run"))
    report = json.loads(run("cleanup_registry", "--json"))

    assert report == {"orphan_registrations": 0, "sessions_expired": 1, "sessions_purged": 0,
                      "stale_presence_members": 0, "users_offline": 1}
    assert planned == {**report, "dry_run": True}  # the dry run foresaw exactly what the run did
    assert "sessions expired: 0" in run("cleanup_registry").splitlines()
    SessionRecord.objects.update(ended_at=timezone.now() - dt.timedelta(days=2))
    assert json.loads(run("cleanup_registry", "--json", "--retention-days", "1"))["sessions_purged"] == 1


def _redis_state(client) -> dict:
    """Every key with its value (DUMP) and whether it has a TTL: what a dry run must leave as it found it."""
    return {key: (client.dump(key), client.pttl(key) > 0) for key in client.scan_iter(count=1000)}


def _sql_state() -> list:
    return list(SessionRecord.objects.order_by("pk").values_list("pk", "session_id", "status", "ended_at"))


def test_cleanup_registry_dry_run_reports_what_a_run_would_do_and_changes_nothing(stack):
    services.register_session(user_id="u1", session_id="lapsed")  # ends as expired, u1 goes offline
    lapse("u1", "lapsed")
    services.register_session(user_id="u2", session_id="live")
    presence.join("u2", presence.session_member("ghost"))  # a member whose session does not exist: stale
    services.register_session(user_id="u3", session_id="gone")
    register_collection_user(user_id="u3", collection_name="docs", session_id="gone")
    services.unregister_session(user_id="u3", session_id="gone")  # its registration is an orphan
    services.flush_session_history()
    SessionRecord.objects.update(ended_at=timezone.now() - dt.timedelta(days=2))  # purged with --retention-days 1
    client = stack.redis_client()
    before_redis, before_sql = _redis_state(client), _sql_state()

    planned = json.loads(run("cleanup_registry", "--dry-run", "--json", "--retention-days", "1"))
    human = run("cleanup_registry", "--dry-run", "--retention-days", "1")

    assert _redis_state(client) == before_redis and _sql_state() == before_sql
    assert planned == {"dry_run": True, "orphan_registrations": 1, "sessions_expired": 1, "sessions_purged": 1,
                       "stale_presence_members": 1, "users_offline": 1}
    assert human.splitlines()[0] == "Dry run: nothing was changed. A run now would report:"


def test_gateway_status_summarises_the_live_gateway():
    services.register_session(user_id="u1", session_id="s1")
    services.register_session(user_id="u2", session_id="s2")
    services.unregister_session(user_id="u2", session_id="s2")
    services.flush_session_history()
    presence.join("u1", presence.socket_member("sock-1"))
    presence.join("u3", presence.socket_member("sock-2"))
    ListenerState.objects.create(worker_id="w1", uid="u1", kinds=["messages", "notifications", "chat:sp/chats/t"],
                                 since=timezone.now())
    register_collection_user(user_id="u1", collection_name="docs", session_id="s1")

    snapshot = json.loads(run("gateway_status", "--json"))

    assert snapshot["users_online"] == 2 and snapshot["sockets"] == 2
    assert snapshot["sessions"] == {"online": 1, "expired": 0, "closed": 1}
    assert snapshot["listeners"] == {"users": 1, "workers": 1, "by_worker": {"w1": 1},
                                     "by_kind": {"chat": 1, "messages": 1, "notifications": 1}}
    assert snapshot["chroma_registrations"] == 1
    assert snapshot["health"] == {"redis": "ok", "firestore": "ok", "rtdb": "ok", "chroma": "ok"}
    assert snapshot["per_minute"] == {"events": 0, "rpc_calls": 0, "rpc_errors": 0}
    human = run("gateway_status")
    assert "users online          2" in human and "listeners             1 user on 1 worker; " in human
    assert "workers               w1 (1 user)" in human  # plurals: was "1 users on 1 workers"
    assert "backends              redis ok, firestore ok, rtdb ok, chroma ok" in human


def test_gateway_status_counts_the_last_minute_of_activity():
    activity.record_rpc_call(code="OK")
    activity.record_rpc_call(code="INTERNAL")
    activity.record_events_published(7)
    activity.flush()
    # A minute counts complete 10-second buckets: these show up once their bucket has closed.
    per_minute = wait_until(
        lambda: (counts := json.loads(run("gateway_status", "--json"))["per_minute"])["rpc_calls"] and counts,
        timeout=20, interval=0.5,
    )
    assert per_minute == {"events": 7, "rpc_calls": 2, "rpc_errors": 1}


def test_gateway_status_fails_when_a_backend_is_down(stack):
    stack.processes["rtdb"].stop()
    try:
        out = io.StringIO()
        with pytest.raises(CommandError, match="unhealthy backends: rtdb"):
            call_command("gateway_status", stdout=out)
        assert "rtdb error" in out.getvalue()
    finally:
        stack.restart("rtdb")


@pytest.fixture
def worker_w1(stack):
    client = stack.redis_client()
    client.set(lease_key("u1"), "w1", px=60_000)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(control_channel("w1"))
    wait_until(lambda: subscriber_count(control_channel("w1")) == 1)
    yield pubsub
    pubsub.close()


def test_resync_user_asks_the_owning_worker(worker_w1):
    assert json.loads(run("resync_user", "u1", "--json")) == {"uid": "u1", "resync_requested": True}
    received = wait_until(lambda: worker_w1.get_message(timeout=0.2))
    assert json.loads(received["data"]) == {"action": "resync", "uid": "u1"}
    assert "Re-sync requested for u1" in run("resync_user", "u1")


def test_resync_user_fails_when_no_worker_holds_the_user():
    with pytest.raises(CommandError, match="no listeners are attached for nobody"):
        run("resync_user", "nobody")
