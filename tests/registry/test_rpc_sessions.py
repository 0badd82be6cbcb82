"""REGISTRY.* over /rpc: sessions (many per user), heartbeat, presence kept in step, user tokens."""
from __future__ import annotations

import itertools

import pytest

from core.integrations.redis import get_redis
from realtime import presence
from realtime.auth import user_of_token
from registry import selectors, services, store
from registry.models import SessionRecord
from tests.conftest import wait_until
from tests.registry.sessions import expires_ms, lapse

pytestmark = pytest.mark.django_db(transaction=True)  # RPC methods run on the RPC thread pool

_keys = itertools.count()


def register(rpc, user_id: str, session_id: str, **kwargs):
    return rpc("REGISTRY.register_user", user_id, session_id, user_id=user_id, idempotency_key=f"reg-{next(_keys)}",
               kwargs=kwargs)


def unregister(rpc, session_id: str, user_id: str = "u1"):
    return rpc("REGISTRY.unregister_session", session_id, user_id=user_id, idempotency_key=f"unreg-{next(_keys)}")


def test_register_returns_the_original_payload(rpc):
    result = register(rpc, "u1", "s1", backend_route="pod-a")
    assert set(result.data) == {"user_id", "session_id", "backend_route", "last_seen_at"}
    assert result.data["user_id"] == "u1" and result.data["session_id"] == "s1"
    assert result.data["backend_route"] == "pod-a"
    assert result.data["last_seen_at"].endswith("Z")
    assert register(rpc, "u1", "s2").data["backend_route"] is None


def test_two_sessions_for_one_user_unregister_one_keeps_the_other(rpc):
    register(rpc, "u1", "s1")
    register(rpc, "u1", "s2")
    assert sorted(presence.live_members("u1")) == ["session:s1", "session:s2"]

    assert unregister(rpc, "s1").data is True

    assert [s["session_id"] for s in rpc("REGISTRY.get_user_sessions", "u1", user_id="u1").data] == ["s2"]
    assert presence.live_members("u1") == ["session:s2"]
    assert presence.is_online("u1")
    assert [s.session_id for s in store.user_sessions("u1")] == ["s2"]
    services.flush_session_history()
    assert list(SessionRecord.objects.values_list("session_id", "status")) == [("s1", "closed")]


def test_unregistering_the_last_session_takes_the_user_offline_and_a_repeat_returns_false(rpc):
    register(rpc, "u1", "s1")
    assert unregister(rpc, "s1").data is True
    assert not presence.is_online("u1")
    assert unregister(rpc, "s1").data is False
    assert unregister(rpc, "never-registered").data is False


def test_heartbeat_pushes_the_expiry_of_the_session_and_of_the_presence_member(rpc, settings):
    register(rpc, "u1", "s1")
    before = expires_ms("u1", "s1")
    lapse("u1", "s1", seconds_ago=-5)  # 5 s left

    beat = rpc("REGISTRY.heartbeat", "s1", user_id="u1").data

    (session,) = store.user_sessions("u1")
    assert expires_ms("u1", "s1") >= before and beat["expires_at"].endswith("Z")
    assert (session.expires_at - session.last_seen_at).total_seconds() == settings.REGISTRY_SESSION_TTL
    assert presence.live_members("u1") == ["session:s1"]


def test_a_registration_outlives_its_presence(rpc, settings):
    """Contract §3: a session lives REGISTRY_SESSION_TTL (24 h), its presence member LISTENERS_TTL_SECONDS (90 s)."""
    register(rpc, "u1", "s1")
    (session,) = store.user_sessions("u1")
    assert (session.expires_at - session.last_seen_at).total_seconds() == settings.REGISTRY_SESSION_TTL == 86400
    member_expiry_s = get_redis().zscore(presence.user_keys("u1")[0], "session:s1") / 1000
    assert member_expiry_s - session.last_seen_at.timestamp() == pytest.approx(settings.LISTENERS_TTL_SECONDS, abs=1)


def test_heartbeat_of_a_closed_or_expired_session_is_not_found(rpc):
    register(rpc, "u1", "s1")
    unregister(rpc, "s1")
    assert rpc("REGISTRY.heartbeat", "s1", user_id="u1").code == "NOT_FOUND"

    register(rpc, "u1", "s2")
    lapse("u1", "s2")
    result = rpc("REGISTRY.heartbeat", "s2", user_id="u1")
    assert result.code == "NOT_FOUND"
    assert "register_user" in result.body["error"]["message"]


def test_get_user_sessions_lists_only_live_sessions_of_that_user(rpc):
    register(rpc, "u1", "s1", authorized_companies=["c2", "c1"])
    register(rpc, "u1", "s2")
    register(rpc, "u2", "s3")
    lapse("u1", "s2")

    sessions = rpc("REGISTRY.get_user_sessions", "u1", user_id="u1").data

    assert [s["session_id"] for s in sessions] == ["s1"]
    assert sessions[0]["authorized_companies"] == ["c1", "c2"]
    assert set(sessions[0]) >= {"session_id", "user_id", "backend_route", "created_at", "last_seen_at", "expires_at"}


def test_session_ids_are_per_user_another_users_session_is_never_touched(rpc):
    """Issue 16 rule 6: re-registering, heart-beating or unregistering acts on the acting user's own session only;
    another user's session id is NOT_FOUND (heartbeat) or unknown (unregister), with no hint whose it is."""
    register(rpc, "u1", "tab-1", backend_route="u1-pod")
    register(rpc, "u2", "tab-1")
    assert [s.backend_route for s in store.user_sessions("u1")] == ["u1-pod"]
    assert presence.live_members("u1") == ["session:tab-1"] and presence.live_members("u2") == ["session:tab-1"]

    register(rpc, "u1", "only-u1")
    refused = rpc("REGISTRY.heartbeat", "only-u1", user_id="u2")
    assert refused.code == "NOT_FOUND" and "u1" not in refused.body["error"]["message"]
    assert unregister(rpc, "only-u1", user_id="u2").data is False
    assert {s.session_id for s in store.user_sessions("u1")} == {"tab-1", "only-u1"}
    assert unregister(rpc, "tab-1", user_id="u2").data is True
    assert {s.session_id for s in store.user_sessions("u1")} == {"tab-1", "only-u1"}
    assert not presence.is_online("u2") and presence.is_online("u1")


def test_register_rejects_another_users_id_and_bad_arguments(rpc):
    result = rpc("REGISTRY.register_user", "u2", "s1", user_id="u1", idempotency_key="k-scope")
    assert result.status == 403 and result.code == "PERMISSION_DENIED"
    assert register(rpc, "u1", "a/b").code == "INVALID_ARGS"
    assert register(rpc, "u1", "s1", authorized_companies="c1").code == "INVALID_ARGS"
    assert register(rpc, "u1", "s1", authorized_companies=["c1", 2]).code == "INVALID_ARGS"
    assert store.user_sessions("u1") == [] and store.user_sessions("u2") == []


def test_unregister_needs_an_idempotency_key_and_register_is_repeatable(rpc):
    assert rpc("REGISTRY.unregister_session", "s1", user_id="u1").code == "INVALID_REQUEST"
    # A login registers again with the key the app derives from the same arguments: it refreshes, never replays.
    first = rpc("REGISTRY.register_user", "u1", "s1", user_id="u1", idempotency_key="derived")
    again = rpc("REGISTRY.register_user", "u1", "s1", user_id="u1", idempotency_key="derived")
    assert "Idempotent-Replayed" not in again.headers
    assert again.data["last_seen_at"] >= first.data["last_seen_at"]
    assert rpc("REGISTRY.register_user", "u1", "s2", user_id="u1").status == 200  # no key needed
    assert list(get_redis().scan_iter("idemp:*")) == []


def test_issue_ws_token_mints_a_token_for_that_user_only(rpc):
    services.register_session(user_id="u1", session_id="s-token")
    data = rpc("REGISTRY.issue_ws_token", "u1", user_id="u1").data
    assert set(data) == {"token", "expires_in"}
    assert user_of_token(data["token"]) == "u1"
    assert 0 < data["expires_in"] <= 300  # minutes, not an hour (README, Security)
    assert rpc("REGISTRY.issue_ws_token", "u2", user_id="u1").code == "PERMISSION_DENIED"


def test_no_ws_token_without_a_live_session(rpc):
    assert rpc("REGISTRY.issue_ws_token", "u-none", user_id="u-none").code == "NOT_FOUND"


def test_ping_still_answers(rpc):
    assert rpc("REGISTRY.ping").data == {"pong": True}


def test_a_registration_without_heartbeats_outlives_presence(rpc, settings):
    """The Reflex app registers at login and never heart-beats: the user goes offline after the presence TTL, the
    registration (and its companies, which filter the listeners) stays until REGISTRY_SESSION_TTL or logout."""
    settings.LISTENERS_TTL_SECONDS = 1
    assert register(rpc, "u-quiet", "s-quiet", authorized_companies=["co-9"]).status == 200
    wait_until(lambda: not presence.is_online("u-quiet"), timeout=10)
    listed = rpc("REGISTRY.get_user_sessions", "u-quiet", user_id="u-quiet").data
    assert [session["session_id"] for session in listed] == ["s-quiet"]
    assert selectors.authorized_companies("u-quiet") == ["co-9"]
