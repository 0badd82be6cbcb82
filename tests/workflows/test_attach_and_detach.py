"""Attach/detach: atomic per user, a grace period after going offline, admin rows, staff actions."""
from __future__ import annotations

import threading

import pytest
from django.db import OperationalError

from core.metrics import LISTENERS_ACTIVE
from realtime import presence
from tests.conftest import wait_until
from tests.workflows.conftest import db, go_online, ready, synced_count, user_events
from workflows import ownership
from workflows.selectors import list_listener_states, listener_counts
from workflows.services import request_listener_detach, request_listener_restart, request_resync


def state_row(uid: str):  # noqa: ANN201 - a ListenerState or None
    """The user's mirror row, or None while SQLite is locked by the worker's mirror thread writing it (retried)."""
    try:
        return list_listener_states(uid=uid).first()
    except OperationalError:
        return None

pytestmark = pytest.mark.django_db(transaction=True)


def active(kind: str) -> float:
    return LISTENERS_ACTIVE.labels(kind)._value.get()


def test_fifty_concurrent_attach_triggers_make_one_set_of_listeners_and_one_sync(worker):
    before = {kind: active(kind) for kind in ("notifications", "messages", "workflow")}
    presence.join("a1", presence.session_member("s1"))  # announces the user: the first trigger
    barrier = threading.Barrier(50)

    def trigger() -> None:
        barrier.wait()
        worker.trigger("a1")
        presence.join("a1", presence.session_member("s1"))  # the same member again: more announcements

    threads = [threading.Thread(target=trigger) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_until(lambda: ready(worker, "a1"))
    worker.executor.wait_idle(10)
    wait_until(lambda: user_events("a1", "notif.sync") and user_events("a1", "msg.sync"))
    assert worker.attach_count == 1
    assert {kind: active(kind) - before[kind] for kind in before} == {"notifications": 1, "messages": 1, "workflow": 1}
    assert sum(worker.channels.queries_per_channel()) == 2
    wait_until(lambda: worker.executor.wait_idle(1) and not worker.users["a1"]._syncs._pending)
    assert len(user_events("a1", "notif.sync")) == 1
    assert len(user_events("a1", "msg.sync")) == 1


def test_offline_users_are_detached_after_the_grace_period_and_a_quick_reconnect_keeps_them(make_worker):
    worker = make_worker(detach_grace_s=1.5)
    member = go_online("a2")
    wait_until(lambda: ready(worker, "a2") and user_events("a2", "notif.sync"))
    presence.leave("a2", member)
    go_online("a2")  # back within the grace period: same listeners, a fresh sync for the new session
    wait_until(lambda: len(user_events("a2", "notif.sync")) == 2)
    assert worker.attach_count == 1
    presence.leave("a2", presence.live_members("a2")[0])
    wait_until(lambda: "a2" not in worker.users, timeout=10)
    assert ownership.owner("a2") is None  # the lease is handed back
    assert sum(worker.channels.queries_per_channel()) == 0


def test_listener_state_rows_follow_attach_and_detach(make_worker):
    worker = make_worker(detach_grace_s=0.2)
    member = go_online("a3")
    wait_until(lambda: ready(worker, "a3"))
    row = wait_until(lambda: list_listener_states(uid="a3").first())
    assert row.worker_id == worker.worker_id
    assert row.kinds == ["messages", "notifications", "workflow"] and row.restarts == 0
    wait_until(lambda: list_listener_states(uid="a3").first().last_event_at is not None)
    wait_until(lambda: listener_counts() == {"listeners_count": 1, "workflow_listeners_count": 1})
    presence.leave("a3", member)
    wait_until(lambda: not list_listener_states(uid="a3").exists(), timeout=10)
    wait_until(lambda: listener_counts()["listeners_count"] == 0)


def test_staff_restart_resync_and_detach_reach_the_owning_worker(worker):
    assert request_resync(uid="nobody") is False
    go_online("a4")
    wait_until(lambda: ready(worker, "a4") and synced_count("a4") == 0)
    user = worker.users["a4"]
    old_streams = dict(user.streams)
    attached_at = wait_until(lambda: state_row("a4")).since

    assert request_listener_restart(uid="a4") is True
    wait_until(lambda: all(user.streams.get(kind) is not stream for kind, stream in old_streams.items()))
    # One staff Restart is one restart whatever the number of kinds, and "since" is the new listeners' start.
    wait_until(lambda: list_listener_states(uid="a4").filter(restarts=1, since__gt=attached_at).exists())
    db().document("clients/a4/notifications/n").set({"read": False})
    wait_until(lambda: synced_count("a4") == 1)

    syncs = len(user_events("a4", "notif.sync")), len(user_events("a4", "msg.sync"))
    assert request_resync(uid="a4") is True
    wait_until(lambda: (len(user_events("a4", "notif.sync")), len(user_events("a4", "msg.sync")))
               == (syncs[0] + 1, syncs[1] + 1))

    assert request_listener_detach(uid="a4") is True
    wait_until(lambda: not user.streams)
    assert ownership.owner("a4") == worker.worker_id  # still ours: it comes back on the next presence change
    go_online("a4")
    wait_until(lambda: ready(worker, "a4"))
