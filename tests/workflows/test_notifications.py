"""notif.sync: the unread-notifications listener (Firestore emulator → event history)."""
from __future__ import annotations

import concurrent.futures
import datetime as dt
import threading

import pytest

from registry.services import register_session
from tests.conftest import wait_until
from tests.workflows.conftest import db, go_online, ready, synced_count, user_events

pytestmark = pytest.mark.django_db(transaction=True)

ITEM_KEYS = {"message", "file_name", "collection_id", "collection_name", "url", "status", "read", "doc_id", "job_id",
             "file_id", "function_name", "timestamp", "additional_info", "info_message"}


def notification(job_id: str, *, read: bool = False, collection_id: str = "co-1", **extra) -> dict:
    return {"job_id": job_id, "file_name": f"{job_id}.pdf", "status": "completed", "read": read,
            "collection_id": collection_id, "collection_name": "Acme", "function_name": "APbookeeper",
            "timestamp": dt.datetime(2025, 9, 20, 11, 44, tzinfo=dt.timezone.utc), **extra}


def test_attach_publishes_one_sync_of_the_unread_notifications_in_the_contract_shape(worker):
    notifications = db().collection("clients/n1/notifications")
    notifications.document("j1").set(notification("j1", additional_info={"error_message": "bad VAT"}))
    notifications.document("j2").set(notification("j2", timestamp=dt.datetime(2025, 9, 21, tzinfo=dt.timezone.utc)))
    notifications.document("j3").set(notification("j3", read=True))
    go_online("n1")
    wait_until(lambda: user_events("n1", "notif.sync"))
    wait_until(lambda: ready(worker, "n1"))
    [sync] = user_events("n1", "notif.sync")
    payload = sync["payload"]
    assert payload["count"] == 2 and set(payload) == {"notifications", "count", "timestamp"}
    newest, older = payload["notifications"]
    assert set(newest) == ITEM_KEYS
    assert (newest["doc_id"], older["doc_id"]) == ("j2", "j1")
    assert older["message"] == "j1.pdf - completed"
    assert older["url"] == "/edit_form/j1"
    assert older["timestamp"] == "2025-09-20T11:44:00Z"
    assert older["additional_info"] == '{"error_message": "bad VAT"}'
    assert older["info_message"] == "bad VAT"
    assert older["read"] is False


def test_direct_writes_produce_syncs_of_the_new_unread_set(worker):
    go_online("n2")
    wait_until(lambda: user_events("n2", "notif.sync"))
    notifications = db().collection("clients/n2/notifications")
    notifications.document("a").set(notification("a"))
    wait_until(lambda: user_events("n2", "notif.sync")[-1]["payload"]["count"] == 1)
    notifications.document("a").update({"read": True})
    wait_until(lambda: user_events("n2", "notif.sync")[-1]["payload"]["count"] == 0)
    assert [event["payload"]["count"] for event in user_events("n2", "notif.sync")] == [0, 1, 0]


def test_a_burst_of_writes_is_coalesced_into_one_sync(make_worker):
    """20 writes released together (threads behind a barrier) land within a few tens of ms: one sync, not 20.
    The debounce window is widened from 100 to 300 ms so a slow write on a busy machine cannot split the burst."""
    worker = make_worker(sync_quiet_s=0.3)
    go_online("n3")
    wait_until(lambda: ready(worker, "n3") and user_events("n3", "notif.sync"))
    burst = 20
    notifications = db().collection("clients/n3/notifications")
    barrier = threading.Barrier(burst)

    def write(index: int) -> None:
        barrier.wait()
        notifications.document(f"b{index}").set(notification(f"b{index}"))

    with concurrent.futures.ThreadPoolExecutor(burst) as pool:
        list(pool.map(write, range(burst)))
    wait_until(lambda: synced_count("n3") == burst)
    syncs = user_events("n3", "notif.sync")[1:]
    assert [sync["payload"]["count"] for sync in syncs] == [burst]


def test_notifications_are_filtered_by_the_authorized_companies(worker):
    # A real registry session that states the user's companies (read by the worker from Redis).
    register_session(user_id="n4", session_id="filtered", authorized_companies=["co-1"])
    notifications = db().collection("clients/n4/notifications")
    notifications.document("mine").set(notification("mine", collection_id="co-1"))
    notifications.document("other").set(notification("other", collection_id="co-2"))
    go_online("n4")
    sync = wait_until(lambda: user_events("n4", "notif.sync"))[0]
    assert [item["doc_id"] for item in sync["payload"]["notifications"]] == ["mine"]


def test_without_registered_companies_the_apps_listeners_registry_document_filters(worker):
    """The Reflex app writes listeners_registry/{uid}.authorized_companies_ids; it is re-read at every sync."""
    db().document("listeners_registry/n5").set({"authorized_companies_ids": ["co-1"]})
    notifications = db().collection("clients/n5/notifications")
    notifications.document("mine").set(notification("mine", collection_id="co-1"))
    notifications.document("other").set(notification("other", collection_id="co-2"))
    go_online("n5")
    first = wait_until(lambda: user_events("n5", "notif.sync"))[0]
    assert [item["doc_id"] for item in first["payload"]["notifications"]] == ["mine"]

    db().document("listeners_registry/n5").set({"authorized_companies_ids": []})  # empty: nothing filtered
    notifications.document("third").set(notification("third", collection_id="co-3"))
    latest = wait_until(lambda: [e for e in user_events("n5", "notif.sync") if e["payload"]["count"] == 3])[-1]
    assert sorted(item["doc_id"] for item in latest["payload"]["notifications"]) == ["mine", "other", "third"]
