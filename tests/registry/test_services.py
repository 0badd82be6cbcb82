"""Registry services: expiry sweep, the SQL history, staff endings, the authorized-companies selector, cleanup."""
from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from chroma.selectors import list_collection_registrations
from chroma.services import register_collection_user
from core import keys
from realtime import presence
from registry import cleanup, selectors, services, store
from registry.models import SessionRecord
from tests.conftest import wait_until
from tests.registry.sessions import lapse

pytestmark = pytest.mark.django_db


def _history() -> dict[str, str]:
    return dict(SessionRecord.objects.values_list("session_id", "status"))


def test_sweep_expires_lapsed_sessions_writes_the_history_and_takes_their_users_offline(stack):
    pubsub = stack.redis_client().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(presence.EVENTS_CHANNEL)
    services.register_session(user_id="u1", session_id="lapsed", backend_route="pod-a", authorized_companies=["c1"])
    services.register_session(user_id="u2", session_id="fresh")
    services.register_session(user_id="u3", session_id="lapsed-but-socket")
    presence.join("u3", presence.socket_member("sock"))
    lapse("u1", "lapsed")
    lapse("u3", "lapsed-but-socket")

    result = services.sweep_expired_sessions()

    assert result == services.SweepResult(expired=2, users_left=1)
    assert _history() == {"lapsed": "expired", "lapsed-but-socket": "expired"}
    record = SessionRecord.objects.get(session_id="lapsed")
    assert (record.user_id, record.backend_route, record.authorized_companies) == ("u1", "pod-a", ["c1"])
    assert timezone.now() - dt.timedelta(seconds=5) < record.ended_at < timezone.now()
    assert [s.session_id for s in store.user_sessions("u2")] == ["fresh"]
    assert store.user_sessions("u1") == [] and store.user_sessions("u3") == []
    assert not presence.is_online("u1") and presence.is_online("u2") and presence.is_online("u3")
    assert presence.live_members("u3") == ["ws:sock"]
    announced = []
    wait_until(lambda: announced.append(pubsub.get_message(timeout=0.2)) or any(
        m and presence.parse_event(m["data"]) == {"uid": "u1", "online": False, "went_offline": True} for m in announced
    ))
    assert services.sweep_expired_sessions() == services.SweepResult(expired=0, users_left=0)


def test_sweep_works_through_more_sessions_than_one_batch():
    for n in range(7):
        services.register_session(user_id="u0", session_id=f"s{n}")
        lapse("u0", f"s{n}")
    assert services.sweep_expired_sessions(batch=3).expired == 7
    assert presence.online_uids() == []
    assert SessionRecord.objects.count() == 7


def test_sweep_never_ends_a_session_that_heart_beat_meanwhile():
    services.register_session(user_id="u1", session_id="s1")
    lapse("u1", "s1", seconds_ago=-5)
    due_ms = store.now_ms() + 10_000  # a sweep that sees it due...
    due = store.due_for_sweep(due_ms, 10)
    services.heartbeat_session(user_id="u1", session_id="s1")  # ...then a heartbeat before the sweep's script runs
    results = store.run_many([store.end_call(uid, sid, store.EXPIRED, due_ms) for uid, sid in due], store.END)
    assert results == [-1]
    assert [s.session_id for s in selectors.user_sessions(user_id="u1")] == ["s1"]


def test_register_of_a_lapsed_unswept_session_starts_a_new_one_and_records_the_old():
    first = services.register_session(user_id="u1", session_id="s1")
    lapse("u1", "s1")
    second = services.register_session(user_id="u1", session_id="s1")
    assert second.created_at >= first.created_at  # a new session (same millisecond is possible on a fast machine)
    assert second.expires_at > first.expires_at - dt.timedelta(seconds=5)  # not the lapsed one, which expired
    services.flush_session_history()
    assert _history() == {"s1": "expired"}


def test_history_records_pushed_back_after_a_failed_write_are_written_once(monkeypatch):
    services.register_session(user_id="u1", session_id="s1")
    services.unregister_session(user_id="u1", session_id="s1")
    records = store.pop_history(10)
    store.push_back_history(records)
    store.push_back_history(records)  # written twice to Redis (a retry raced): one row
    assert services.flush_session_history() == 2
    assert SessionRecord.objects.count() == 1


def test_end_sessions_skips_ended_ones():
    services.register_session(user_id="u1", session_id="a")
    services.register_session(user_id="u1", session_id="b")
    services.unregister_session(user_id="u1", session_id="b")
    assert services.end_sessions(sessions=[("u1", "a"), ("u1", "b")], status=store.EXPIRED) == 1
    services.flush_session_history()
    assert _history() == {"a": "expired", "b": "closed"}
    assert not presence.is_online("u1")


def test_authorized_companies_is_the_union_over_live_sessions_or_none():
    assert selectors.authorized_companies("u1") is None
    services.register_session(user_id="u1", session_id="no-filter")
    assert selectors.authorized_companies("u1") is None
    services.register_session(user_id="u1", session_id="a", authorized_companies=["c2", "c1"])
    services.register_session(user_id="u1", session_id="b", authorized_companies=["c3", "c2"])
    services.register_session(user_id="u1", session_id="lapsed", authorized_companies=["c9"])
    services.register_session(user_id="u2", session_id="other", authorized_companies=["c7"])
    lapse("u1", "lapsed")
    assert selectors.authorized_companies("u1") == ["c1", "c2", "c3"]
    services.unregister_session(user_id="u1", session_id="a")
    services.unregister_session(user_id="u1", session_id="b")
    assert selectors.authorized_companies("u1") is None
    services.register_session(user_id="u1", session_id="c", authorized_companies=[])
    assert selectors.authorized_companies("u1") is None  # an empty list filters nothing, as in the original


def test_purge_deletes_only_history_that_ended_before_the_retention():
    for session_id in ("old", "recent", "live"):
        services.register_session(user_id="u1", session_id=session_id)
    services.unregister_session(user_id="u1", session_id="old")
    services.unregister_session(user_id="u1", session_id="recent")
    services.flush_session_history()
    SessionRecord.objects.filter(session_id="old").update(ended_at=timezone.now() - dt.timedelta(days=8))
    assert services.purge_ended_sessions(older_than=dt.timedelta(days=7)) == 1
    assert sorted(SessionRecord.objects.values_list("session_id", flat=True)) == ["recent"]
    assert [s.session_id for s in store.user_sessions("u1")] == ["live"]


def test_cleanup_brings_presence_sessions_and_registrations_into_agreement(settings):
    services.register_session(user_id="u1", session_id="live")
    services.register_session(user_id="u2", session_id="closed")
    services.register_session(user_id="u3", session_id="lapsed")
    services.unregister_session(user_id="u2", session_id="closed")
    # A member without its session (written by hand, or by an older version).
    presence.join("u2", presence.session_member("closed"))
    lapse("u3", "lapsed")
    # A socket of a process that died: its member expires by TTL, and nothing swept it yet.
    settings.LISTENERS_TTL_SECONDS = 1
    presence.join("u4", presence.socket_member("dead-process-socket"))
    settings.LISTENERS_TTL_SECONDS = 90
    register_collection_user(user_id="u1", collection_name="kept", session_id="live")
    register_collection_user(user_id="u2", collection_name="orphan", session_id="closed")
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


def _redis_calls(stack, action) -> dict[str, int]:
    client = stack.redis_client()
    client.config_resetstat(**({"target_nodes": "all"} if stack.cluster_mode else {}))
    action()
    calls = _command_calls(client)
    calls.pop("config|resetstat", None)
    return calls


def test_register_heartbeat_and_unregister_are_one_script_each_and_no_sql(stack, django_assert_num_queries):
    """One round trip per call, the same with 10 or 1,000 sessions; no SQL, no SCAN."""
    for n in range(10):
        services.register_session(user_id=f"u{n // 2}", session_id=f"s{n}")
    # Every script loaded on the node of u3's slot (a cluster loads scripts per node): no NOSCRIPT fallback below.
    services.register_session(user_id="u3", session_id="warm")
    services.heartbeat_session(user_id="u3", session_id="warm")
    services.unregister_session(user_id="u3", session_id="warm")
    costs = []
    for size in (10, 1000):
        for n in range(len(costs) and 10, size):
            services.register_session(user_id=f"u{n // 2}", session_id=f"s{n}")
        with django_assert_num_queries(0):
            costs.append([
                _redis_calls(stack, lambda: services.register_session(user_id="u3", session_id="new")),
                _redis_calls(stack, lambda: services.heartbeat_session(user_id="u3", session_id="new")),
                _redis_calls(stack, lambda: services.unregister_session(user_id="u3", session_id="new")),
            ])
    # The same work at 10 and 1,000 sessions. PEXPIRE is left out: the scripts extend the user's set only when its
    # TTL is shorter than the new session's (registry/store.py keep_index), which depends on timing, not on size.
    assert [{k: v for k, v in c.items() if k != "pexpire"} for c in costs[0]] == \
        [{k: v for k, v in c.items() if k != "pexpire"} for c in costs[1]]
    for calls in costs[0]:  # commandstats also counts the commands a script runs: one evalsha, nothing else sent
        assert calls["evalsha"] == 1 and "eval" not in calls and not {"scan", "keys"} & set(calls), calls
    assert keys.user_tag("u3") in keys.session_key("u3", "new")
