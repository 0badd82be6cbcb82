"""Registry services: expiry sweep, staff endings, the authorized-companies selector, cleanup."""
from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from chroma.selectors import list_collection_registrations
from chroma.services import register_collection_user
from realtime import presence
from registry import cleanup, selectors, services
from registry.models import Session
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db


def _lapse(session_id: str, seconds_ago: int = 1) -> None:
    Session.objects.filter(session_id=session_id).update(expires_at=timezone.now() - dt.timedelta(seconds=seconds_ago))


def test_sweep_marks_lapsed_sessions_expired_and_takes_their_users_offline(stack):
    pubsub = stack.redis_client().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(presence.EVENTS_CHANNEL)
    services.register_session(user_id="u1", session_id="lapsed")
    services.register_session(user_id="u2", session_id="fresh")
    services.register_session(user_id="u3", session_id="lapsed-but-socket")
    presence.join("u3", presence.socket_member("sock"))
    _lapse("lapsed")
    _lapse("lapsed-but-socket")

    result = services.sweep_expired_sessions()

    assert result == services.SweepResult(expired=2, users_left=1)
    states = dict(Session.objects.values_list("session_id", "status"))
    assert states == {"lapsed": "expired", "fresh": "online", "lapsed-but-socket": "expired"}
    expired = Session.objects.get(session_id="lapsed")
    assert expired.ended_at == expired.expires_at
    assert not presence.is_online("u1") and presence.is_online("u2") and presence.is_online("u3")
    assert presence.live_members("u3") == ["ws:sock"]
    announced = []
    wait_until(lambda: announced.append(pubsub.get_message(timeout=0.2)) or any(
        m and presence.parse_event(m["data"]) == {"uid": "u1", "online": False, "went_offline": True} for m in announced
    ))
    assert services.sweep_expired_sessions() == services.SweepResult(expired=0, users_left=0)


def test_sweep_works_through_more_rows_than_one_batch():
    for n in range(7):
        services.register_session(user_id=f"u{n}", session_id=f"s{n}")
    Session.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert services.sweep_expired_sessions(batch=3).expired == 7
    assert presence.online_uids() == []


def test_end_sessions_skips_closed_ones():
    services.register_session(user_id="u1", session_id="a")
    services.register_session(user_id="u1", session_id="b")
    services.unregister_session(session_id="b")
    assert services.end_sessions(sessions=list(Session.objects.all()), status=Session.Status.EXPIRED) == 1
    assert dict(Session.objects.values_list("session_id", "status")) == {"a": "expired", "b": "closed"}
    assert not presence.is_online("u1")


def test_authorized_companies_is_the_union_over_live_sessions_or_none():
    assert selectors.authorized_companies("u1") is None
    services.register_session(user_id="u1", session_id="no-filter")
    assert selectors.authorized_companies("u1") is None
    services.register_session(user_id="u1", session_id="a", authorized_companies=["c2", "c1"])
    services.register_session(user_id="u1", session_id="b", authorized_companies=["c3", "c2"])
    services.register_session(user_id="u1", session_id="lapsed", authorized_companies=["c9"])
    services.register_session(user_id="u2", session_id="other", authorized_companies=["c7"])
    _lapse("lapsed")
    assert selectors.authorized_companies("u1") == ["c1", "c2", "c3"]
    services.unregister_session(session_id="a")
    services.unregister_session(session_id="b")
    assert selectors.authorized_companies("u1") is None
    services.register_session(user_id="u1", session_id="c", authorized_companies=[])
    assert selectors.authorized_companies("u1") is None  # an empty list filters nothing, as in the original


def test_purge_deletes_only_rows_that_ended_before_the_retention():
    for session_id in ("old", "recent", "live"):
        services.register_session(user_id="u1", session_id=session_id)
    services.unregister_session(session_id="old")
    services.unregister_session(session_id="recent")
    Session.objects.filter(session_id="old").update(ended_at=timezone.now() - dt.timedelta(days=8))
    assert services.purge_ended_sessions(older_than=dt.timedelta(days=7)) == 1
    assert sorted(Session.objects.values_list("session_id", flat=True)) == ["live", "recent"]


def test_cleanup_brings_presence_rows_and_registrations_into_agreement(settings):
    services.register_session(user_id="u1", session_id="live")
    services.register_session(user_id="u2", session_id="closed-but-present")
    services.register_session(user_id="u3", session_id="lapsed")
    # A row closed while its presence leave failed: the member is still there.
    Session.objects.filter(session_id="closed-but-present").update(
        status=Session.Status.CLOSED, ended_at=timezone.now()
    )
    _lapse("lapsed")
    # A socket of a process that died: its member expires by TTL, and nothing swept it yet.
    settings.LISTENERS_TTL_SECONDS = 1
    presence.join("u4", presence.socket_member("dead-process-socket"))
    settings.LISTENERS_TTL_SECONDS = 90
    register_collection_user(user_id="u1", collection_name="kept", session_id="live")
    register_collection_user(user_id="u2", collection_name="orphan", session_id="closed-but-present")
    register_collection_user(user_id="u5", collection_name="foreign", session_id="not-a-registry-session")
    wait_until(lambda: not presence.is_online("u4"), timeout=5)

    report = cleanup.cleanup_registry(retention=dt.timedelta(days=7))

    assert report == cleanup.CleanupReport(
        sessions_expired=1, users_offline=2, stale_presence_members=1, orphan_registrations=1, sessions_purged=0
    )
    assert presence.online_uids() == ["u1"]
    assert sorted(r.collection_name for r in list_collection_registrations()) == ["foreign", "kept"]
    assert cleanup.cleanup_registry(retention=dt.timedelta(days=7)) == cleanup.CleanupReport(0, 0, 0, 0, 0)


def _command_calls(client) -> dict[str, int]:  # noqa: ANN001 - redis.Redis or RedisCluster
    """Calls per command since CONFIG RESETSTAT, summed over every node of a cluster."""
    from redis.cluster import RedisCluster

    if not isinstance(client, RedisCluster):
        return {name.removeprefix("cmdstat_"): s["calls"] for name, s in client.info("commandstats").items()}
    calls: dict[str, int] = {}
    for node_stats in client.info("commandstats", target_nodes=RedisCluster.ALL_NODES).values():
        for name, s in node_stats.items():
            calls[name.removeprefix("cmdstat_")] = calls.get(name.removeprefix("cmdstat_"), 0) + s["calls"]
    return calls


def _unregister_cost(stack, session_id: str) -> tuple[int, dict[str, int]]:
    from django.db import connection

    client = stack.redis_client()
    client.config_resetstat(**({"target_nodes": "all"} if stack.cluster_mode else {}))
    statements = []
    with connection.execute_wrapper(lambda execute, sql, *rest: statements.append(sql) or execute(sql, *rest)):
        assert services.unregister_session(session_id=session_id) is True
    calls = _command_calls(client)
    calls.pop("config|resetstat", None)
    verbs = [sql.split()[0] for sql in statements]
    return [verb for verb in verbs if verb in {"SELECT", "UPDATE", "INSERT", "DELETE"}], calls


def test_unregister_cost_does_not_grow_with_the_registry(stack):
    """One indexed row lookup + one update and one presence script, whether 10 or 1,000 sessions exist; no SCAN."""
    for n in range(10):
        services.register_session(user_id=f"u{n // 2}", session_id=f"s{n}")
    small = _unregister_cost(stack, "s3")
    for n in range(10, 1000):
        services.register_session(user_id=f"u{n // 2}", session_id=f"s{n}")
    large = _unregister_cost(stack, "s777")
    assert small == large
    statements, calls = large
    assert statements == ["SELECT", "UPDATE"]  # by the unique session_id index, then by primary key
    assert not {"scan", "keys"} & {name.split("|")[0] for name in calls}
    assert calls.get("eval") == 1

