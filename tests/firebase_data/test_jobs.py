"""FIREBASE_MANAGEMENT jobs and notifications, through /rpc against the Firestore emulator."""
from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
from google.api_core import exceptions as gexc

from .conftest import OTHER_UID, UID, published_events

NOTIFS = f"clients/{UID}/notifications"


def _notif(fsdb, doc_id, uid=UID):
    return fsdb.document(f"clients/{uid}/notifications/{doc_id}").get()


def _seed_notification(fsdb, doc_id, *, read=False, minutes_ago=0, **fields):
    stamp = dt.datetime(2025, 1, 1, 12, tzinfo=dt.timezone.utc) - dt.timedelta(minutes=minutes_ago)
    fsdb.document(f"{NOTIFS}/{doc_id}").set({"job_id": doc_id, "read": read, "status": "pending", "timestamp": stamp, **fields})


def test_add_or_update_job_by_job_id_writes_then_publishes(fm, fsdb):
    job = {"job_id": "job_1", "batch_id": "b1", "function_name": "APbookeeper", "status": "running",
           "file_name": "inv.pdf", "read": False, "timestamp": "ignored"}
    result = fm("add_or_update_job_by_job_id", NOTIFS, job)
    assert result.data == "job_1"

    stored = _notif(fsdb, "job_1").to_dict()
    assert stored["status"] == "running" and stored["file_name"] == "inv.pdf"
    assert isinstance(stored["timestamp"], dt.datetime)  # a Firestore timestamp, not the caller's string

    [event] = published_events(UID)
    assert event["type"] == "notif.job_updated" and event["uid"] == UID
    assert event["payload"] == {"job_id": "job_1", "batch_id": "b1", "function_name": "APbookeeper",
                                "status": "running", "collection_path": NOTIFS}

    fm("add_or_update_job_by_job_id", NOTIFS, {"job_id": "job_1", "status": "completed"})
    merged = _notif(fsdb, "job_1").to_dict()
    assert merged["status"] == "completed" and merged["file_name"] == "inv.pdf"  # merge keeps the other fields
    assert [e["payload"]["status"] for e in published_events(UID)] == ["running", "completed"]


def test_add_or_update_outside_notifications_publishes_nothing(fm, fsdb):
    path = f"clients/{UID}/task_manager"
    assert fm("add_or_update_job_by_job_id", path, {"job_id": "j9", "status": "x"}).data == "j9"
    assert fsdb.document(f"{path}/j9").get().exists
    assert published_events(UID) == []


def test_add_or_update_job_rejects_bad_input(fm, fsdb):
    assert fm("add_or_update_job_by_job_id", NOTIFS, {"status": "x"}).code == "INVALID_ARGS"
    assert fm("add_or_update_job_by_job_id", NOTIFS, {"job_id": "../escape"}).code == "INVALID_ARGS"
    assert fm("add_or_update_job_by_job_id", NOTIFS, {"job_id": 7}).code == "INVALID_ARGS"
    assert fm("add_or_update_job_by_job_id", f"clients/{UID}", {"job_id": "a"}).code == "INVALID_ARGS"
    denied = fm("add_or_update_job_by_job_id", f"clients/{OTHER_UID}/notifications", {"job_id": "a"})
    assert denied.code == "PERMISSION_DENIED" and denied.status == 403
    assert list(fsdb.collection(f"clients/{OTHER_UID}/notifications").stream()) == []
    assert published_events(UID) == []


def nested(levels: int) -> dict:
    value: object = "leaf"
    for level in range(levels):
        value = {"level": value} if level % 2 else [value]
    return value  # type: ignore[return-value]


def test_maps_nested_deeper_than_firestore_accepts_are_a_caller_error(fm, fsdb):
    path = f"clients/{UID}/task_manager"
    assert fm("add_or_update_job_by_job_id", path, {"job_id": "deep20", "data": nested(20)}).data == "deep20"
    assert fsdb.document(f"{path}/deep20").get().to_dict()["data"] == nested(20)
    for levels in (21, 600):
        refused = fm("add_or_update_job_by_job_id", path, {"job_id": f"deep{levels}", "data": nested(levels)})
        assert refused.code == "INVALID_ARGS" and "deeper than Firestore accepts" in refused.body["error"]["message"]
        assert not fsdb.document(f"{path}/deep{levels}").get().exists


@pytest.mark.parametrize("method,key", [("add_or_update_job_by_file_id", "file_id"),
                                        ("add_or_update_job_by_batch_id", "batch_id")])
def test_add_or_update_by_file_and_batch_id(fm, fsdb, method, key):
    assert fm(method, NOTIFS, {key: "doc_7", "status": "queued"}).data == "doc_7"
    stored = _notif(fsdb, "doc_7").to_dict()
    assert stored[key] == "doc_7" and isinstance(stored["timestamp"], dt.datetime)
    assert published_events(UID) == []


def test_check_job_status(fm, fsdb):
    _seed_notification(fsdb, "job_1", status="done")
    data = fm("check_job_status", UID, "job_1").data
    assert data["status"] == "done" and data["document_id"] == "job_1"
    assert data["timestamp"] == "2025-01-01T12:00:00Z"
    assert fm("check_job_status", UID, None, "job_1").data["document_id"] == "job_1"  # positional, as Reflex calls
    assert fm("check_job_status", UID, file_id="job_1").data["document_id"] == "job_1"
    assert fm("check_job_status", UID, "missing").code == "NOT_FOUND"
    assert fm("check_job_status", UID).code == "INVALID_ARGS"
    assert fm("check_job_status", OTHER_UID, "job_1").code == "PERMISSION_DENIED"


def test_update_job_status_direct_lookup_and_one_timestamp_type(fm, fsdb):
    _seed_notification(fsdb, "job_1")
    fsdb.document(f"{NOTIFS}/file_abc").set({"job_id": "job_2", "file_id": "file_abc", "status": "pending"})

    assert fm("update_job_status", UID, "job_1", "completed", {"error_message": None}).data is True
    stored = _notif(fsdb, "job_1").to_dict()
    assert stored["status"] == "completed" and stored["additional_info"] == {"error_message": None}
    assert isinstance(stored["timestamp"], dt.datetime) and stored["timestamp"].year >= 2025

    assert fm("update_job_status", UID, "job_2", "error", "disk full").data is True  # keyed by file_id
    assert _notif(fsdb, "file_abc").to_dict()["additional_info"] == "disk full"

    assert fm("update_job_status", UID, "nope", "x").code == "NOT_FOUND"
    payloads = [e["payload"] for e in published_events(UID)]
    assert [(p["job_id"], p["status"]) for p in payloads] == [("job_1", "completed"), ("job_2", "error")]


def test_delete_notifications(fm, fsdb):
    for doc_id in ("j1", "j2", "j3"):
        _seed_notification(fsdb, doc_id)
    fsdb.document(f"{NOTIFS}/file_x").set({"job_id": "j2"})
    assert fm("delete_notifications", UID, ["j1", "j2"]).data is True
    assert sorted(s.id for s in fsdb.collection(NOTIFS).stream()) == ["j3"]
    assert fm("delete_notifications", UID, "j3").data is True
    assert fm("delete_notifications", UID, "j3").code == "NOT_FOUND"
    assert fm("delete_notifications", UID).code == "INVALID_ARGS"
    assert fm("delete_notifications", UID, ["ok", "a/b"]).code == "INVALID_ARGS"


def test_get_unread_notifications_newest_first_with_limit(fm, fsdb):
    for index in range(5):
        _seed_notification(fsdb, f"j{index}", minutes_ago=index)
    _seed_notification(fsdb, "old_read", read=True)
    data = fm("get_unread_notifications", UID, 3).data
    assert [item["id"] for item in data] == ["j0", "j1", "j2"]
    assert data[0]["timestamp"] == "2025-01-01T12:00:00Z"
    assert fm("get_unread_notifications", UID, 0).code == "INVALID_ARGS"
    assert fm("get_unread_notifications", UID, 501).code == "INVALID_ARGS"
    assert fm("get_unread_notifications", UID, "3").code == "INVALID_ARGS"


def test_get_unread_falls_back_when_the_index_is_missing(fm, fsdb, monkeypatch):
    for index in range(3):
        _seed_notification(fsdb, f"j{index}", minutes_ago=10 - index)
    from google.cloud.firestore_v1.query import Query

    original_stream = Query.stream
    refused = []

    def stream_without_index(self, *args, **kwargs):
        if self._orders:  # what production Firestore does without the composite index
            refused.append(True)
            raise gexc.FailedPrecondition("The query requires an index")
        return original_stream(self, *args, **kwargs)

    monkeypatch.setattr(Query, "stream", stream_without_index)
    assert [item["id"] for item in fm("get_unread_notifications", UID).data] == ["j2", "j1", "j0"]
    assert refused == [True]  # the ordered query was tried, then the unordered page was sorted here


def test_get_notifications_filters_on_read(fm, fsdb):
    _seed_notification(fsdb, "a", read=True)
    _seed_notification(fsdb, "b", read=False)
    assert [n["id"] for n in fm("get_notifications", UID).data] == ["a", "b"]
    assert [n["id"] for n in fm("get_notifications", UID, True).data] == ["a"]
    assert [n["id"] for n in fm("get_notifications", UID, False, 10).data] == ["b"]


def test_mark_notifications_read(fm, fsdb):
    for doc_id in ("a", "b", "c"):
        _seed_notification(fsdb, doc_id)
    assert fm("mark_notifications_read", UID, ["a"]).data == 1
    assert _notif(fsdb, "a").to_dict()["read"] is True and _notif(fsdb, "b").to_dict()["read"] is False
    assert fm("mark_notifications_read", UID).data == 2
    assert all(s.to_dict()["read"] for s in fsdb.collection(NOTIFS).stream())
    assert fm("mark_notifications_read", UID).data == 0


def test_restart_job_resets_atomically(fm, fsdb):
    job = fsdb.document(f"clients/{UID}/task_manager/job_1")
    job.set({"APBookeeper_step_status": {"extract": 2}, "document": {"initial_data": {"sender": "ACME"}}})
    job.collection("document").document("initial_data").set({"initial_data": {"sender": "ACME"}})
    job.collection("internal_message").document("audit_report").set({"posting_check": "ok"})
    job.collection("internal_message").document("messages").set({"1": {"message": "keep"}})

    assert fm("restart_job", UID, "job_1").data is True
    assert job.get().to_dict() == {"APBookkeeper_step_status": "DOCUMENT_EXTRACTION"}
    assert not job.collection("document").document("initial_data").get().exists
    assert not job.collection("internal_message").document("audit_report").get().exists
    assert job.collection("internal_message").document("messages").get().exists
    assert fm("restart_job", UID, "missing").code == "NOT_FOUND"
    assert not fsdb.document(f"clients/{UID}/task_manager/missing").get().exists


@pytest.mark.parametrize("method", ["delete_items_by_job_id", "async_delete_items_by_job_id"])
def test_delete_items_by_job_id(fm, fsdb, method):
    for job_id in ("j1", "j2", "keep"):
        job = fsdb.document(f"clients/{UID}/task_manager/{job_id}")
        job.set({"status": "x"})
        job.collection("internal_message").document("messages").set({"1": {}})
    for dept in ("ap", "router"):
        fsdb.document(f"clients/{UID}/klk_vision/{dept}").set({"departement": dept})
        for job_id in ("j1", "j2", "keep"):
            fsdb.document(f"clients/{UID}/klk_vision/{dept}/journal/{dept}_{job_id}").set({"job_id": job_id})

    assert fm(method, UID, ["j1", "j2"]).data is True
    assert [s.id for s in fsdb.collection(f"clients/{UID}/task_manager").stream()] == ["keep"]
    assert not fsdb.document(f"clients/{UID}/task_manager/j1/internal_message/messages").get().exists
    assert fsdb.document(f"clients/{UID}/task_manager/keep/internal_message/messages").get().exists
    remaining = sorted(s.id for s in fsdb.collection_group("journal").stream())
    assert remaining == ["ap_keep", "router_keep"]
    assert fm(method, UID, "keep").data is True
    assert list(fsdb.collection(f"clients/{UID}/task_manager").stream()) == []


def test_upload_token_usage_appends(fm, fsdb):
    for tokens in (10, 10, 25):
        assert fm("upload_token_usage", UID, {"job_id": "j1", "provider_name": "openai", "tokens": tokens}).data is True
    entries = fsdb.document(f"clients/{UID}/token_usage/j1").get().to_dict()["entries"]
    assert [e["tokens"] for e in entries] == [10, 10, 25]  # equal entries are kept, none lost
    assert fm("upload_token_usage", UID, {"tokens": 1}).code == "INVALID_ARGS"


def test_writes_need_an_idempotency_key(rpc):
    result = rpc("FIREBASE_MANAGEMENT.restart_job", UID, "j1", user_id=UID)
    assert result.code == "INVALID_REQUEST"


def test_a_read_repeated_with_the_apps_derived_key_sees_fresh_data(fm, fsdb):
    """The Reflex app derives every key as SHA-256 of method and arguments: a repeated read must not be replayed."""
    derived = hashlib.sha256(json.dumps(["FIREBASE_MANAGEMENT.get_notifications", [UID], {}]).encode()).hexdigest()
    _seed_notification(fsdb, "first")
    before = fm("get_notifications", UID, key=derived)
    _seed_notification(fsdb, "second")
    after = fm("get_notifications", UID, key=derived)
    assert [n["job_id"] for n in before.data] == ["first"]
    assert sorted(n["job_id"] for n in after.data) == ["first", "second"]
    assert "Idempotent-Replayed" not in after.headers
