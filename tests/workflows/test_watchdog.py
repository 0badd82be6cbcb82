"""The watchdog: listeners that close or fail are replaced and the user re-synced; backend restarts are survived."""
from __future__ import annotations

import pytest
from google.cloud.firestore_v1.types import ListenResponse, TargetChange

from core.integrations.rtdb import reference
from core.metrics import LISTENER_RESTARTS
from realtime import presence
from tests.conftest import wait_until
from tests.workflows.conftest import chat_events, db, give_space, go_online, ready, synced_count, user_events

pytestmark = pytest.mark.django_db(transaction=True)


def restarts(kind: str, reason: str) -> float:
    return LISTENER_RESTARTS.labels(kind, reason)._value.get()


@pytest.mark.parametrize("kind", ["notifications", "messages", "workflow", "chat"])
def test_a_listener_closed_mid_run_is_replaced_and_events_flow_again(worker, kind):
    uid = f"wd-{kind}"
    go_online(uid)
    reference("sp/chats/th").set({"thread_name": "T"})
    give_space(uid, "sp")
    presence.join(uid, presence.socket_member("sock", presence.ChatInterest("sp", "th", "chats")))
    wait_until(lambda: ready(worker, uid) and synced_count(uid) == 0 and synced_count(uid, "msg.sync") == 0)
    user = worker.users[uid]
    stream_kind = "chat:sp/chats/th" if kind == "chat" else kind
    wait_until(lambda: stream_kind in user.streams)
    before = restarts(kind, "closed")
    doomed = user.streams[stream_kind]
    doomed.close()  # as if the SDK or the server had ended it

    wait_until(lambda: user.streams.get(stream_kind) not in (None, doomed))
    assert restarts(kind, "closed") == before + 1
    if kind == "notifications":
        db().document(f"clients/{uid}/notifications/n").set({"read": False})
        wait_until(lambda: synced_count(uid) == 1)
    elif kind == "messages":
        reference(f"clients/{uid}/direct_message_notif").push({"file_name": "x", "status": "new"})
        wait_until(lambda: user_events(uid, "msg.new"))
    elif kind == "workflow":
        wait_until(lambda: user.streams["workflow"].seeded)
        db().document(f"clients/{uid}/task_manager/j").set({"APBookeeper_step_status": {"s": 2}})
        wait_until(lambda: user_events(uid, "workflow.step_update"))
    else:
        wait_until(lambda: user.streams[stream_kind].seeded or user._chats[stream_kind].ready)
        reference("sp/chats/th/messages").push({"content": "after restart"})
        wait_until(lambda: chat_events(uid, "sp", "th", "chat.message"))


def test_a_change_made_while_a_listener_was_down_is_reported_once_by_its_replacement(worker):
    jobs = db().collection("clients/wd-gap/task_manager")
    jobs.document("j").set({"APBookeeper_step_status": {"s": 1}})
    go_online("wd-gap")
    wait_until(lambda: ready(worker, "wd-gap"))
    user = worker.users["wd-gap"]
    doomed = user.streams["workflow"]
    doomed.close()  # the write below happens while no listener is watching
    jobs.document("j").update({"APBookeeper_step_status.s": 2})
    [event] = wait_until(lambda: user_events("wd-gap", "workflow.step_update"))
    assert event["payload"]["step_changes"] == {"APBookeeper_step_status": {"s": 2}}
    assert user.streams["workflow"] is not doomed


def test_a_firestore_emulator_restart_is_survived(worker, stack):
    go_online("wd-fs")
    db().document("clients/wd-fs/notifications/before").set({"read": False})
    wait_until(lambda: ready(worker, "wd-fs") and synced_count("wd-fs") == 1)
    stack.processes["firestore"].kill()
    stack.restart("firestore")  # comes back empty
    wait_until(lambda: synced_count("wd-fs") == 0, timeout=30)
    db().document("clients/wd-fs/notifications/after").set({"read": False})
    wait_until(lambda: synced_count("wd-fs") == 1, timeout=30)
    assert user_events("wd-fs", "notif.sync")[-1]["payload"]["notifications"][0]["doc_id"] == "after"
    db().document("clients/wd-fs/task_manager/j").set({"APBookeeper_step_status": {"s": 1}})
    wait_until(lambda: user_events("wd-fs", "workflow.step_update"), timeout=30)


def test_a_realtime_db_restart_is_survived(worker, stack):
    go_online("wd-rt")
    wait_until(lambda: ready(worker, "wd-rt") and synced_count("wd-rt", "msg.sync") == 0)
    stack.processes["rtdb"].kill()
    stack.restart("rtdb")
    reference("clients/wd-rt/direct_message_notif").push({"file_name": "after", "status": "new"})
    new = wait_until(lambda: user_events("wd-rt", "msg.new"), timeout=30)
    assert new[0]["payload"]["message"]["file_name"] == "after"


def test_a_stream_the_server_heartbeats_is_replaced_when_it_goes_silent(make_worker):
    """Firestore sends NO_CHANGE about every 30 s on an idle stream (the emulator sends none, so the heartbeats are
    injected here); a heart-beaten stream silent past the stall threshold is replaced."""
    worker = make_worker(stall_s=1.0)
    go_online("wd-stall")
    wait_until(lambda: ready(worker, "wd-stall") and synced_count("wd-stall") == 0)
    user = worker.users["wd-stall"]
    quiet = user.streams["workflow"]  # never heart-beaten: silence is normal for it
    stream = user.streams["notifications"]
    before = restarts("notifications", "stall")
    heartbeat = ListenResponse(target_change=TargetChange(target_change_type=TargetChange.TargetChangeType.NO_CHANGE))
    for _ in range(2):
        worker.loop.call_soon(lambda: stream.on_snapshot(heartbeat))
    wait_until(lambda: stream.heartbeats_seen)
    wait_until(lambda: user.streams.get("notifications") not in (None, stream), timeout=10)
    assert restarts("notifications", "stall") == before + 1
    assert user.streams["workflow"] is quiet
    db().document("clients/wd-stall/notifications/n").set({"read": False})
    wait_until(lambda: synced_count("wd-stall") == 1)
