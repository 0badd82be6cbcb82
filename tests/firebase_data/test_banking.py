"""FIREBASE_MANAGEMENT banker batches and the pending-items working document, through /rpc against the emulator."""
from __future__ import annotations

import datetime as dt

import pytest

from .conftest import OTHER_UID, UID

NOTIFS = f"clients/{UID}/notifications"
TASKS = f"clients/{UID}/task_manager"
MANDATE = f"clients/{UID}/bo_clients/client_a/mandates/mandate_a"
DOCSHEET = f"{MANDATE}/working_doc/pending_item_docsheet"


@pytest.fixture
def mandate(fsdb):
    fsdb.document(MANDATE).set({"contact_space_name": "Alpha", "contact_space_id": "space_a"})
    return MANDATE


@pytest.fixture
def banker_jobs(fsdb):
    stamp = dt.datetime(2025, 3, 1, 8, 30, tzinfo=dt.timezone.utc)
    rows = {
        "b1": {"status": "running", "collection_id": "space_a", "transactions": [{"Id": "t1"}]},
        "b2": {"status": "in queue", "collection_id": "space_a", "transactions": [], "job_id": "job_b2"},
        "b3": {"status": "completed", "collection_id": "space_a"},
        "b4": {"status": "running", "collection_id": "space_b"},
    }
    for doc_id, fields in rows.items():
        fsdb.document(f"{NOTIFS}/{doc_id}").set({"function_name": "banker", "bank_account": "CH93", "timestamp": stamp,
                                                 **fields})
    fsdb.document(f"{NOTIFS}/router1").set({"function_name": "router", "status": "running", "collection_id": "space_a"})
    fsdb.document(f"{TASKS}/b1").set({"payload": {"jobs_data": [{"transactions": [{"Id": "t1"}, {"Id": "t2"}]}]}})
    fsdb.document(f"{TASKS}/job_b2").set({"payload": {"jobs_data": [{"transactions": []}]}})
    return rows


def test_get_banker_batches_keeps_active_batches_of_the_company(fm, banker_jobs):
    batches = {b["notification_id"]: b for b in fm("get_banker_batches", UID, NOTIFS, "space_a").data}
    assert sorted(batches) == ["b1", "b2"]
    assert batches["b1"] == {
        "notification_id": "b1", "job_id": "b1", "status": "running", "bank_account": "CH93",
        "timestamp": "2025-03-01T08:30:00Z", "collection_id": "space_a",
        "transactions": [{"Id": "t1"}, {"Id": "t2"}],  # the job's payload has more transactions: it wins
    }
    assert batches["b2"]["job_id"] == "job_b2" and batches["b2"]["transactions"] == []
    assert fm("get_banker_batches", UID, NOTIFS, "space_none").data == []


def test_get_banker_batches_is_scoped_to_the_callers_notifications(fm, banker_jobs):
    assert fm("get_banker_batches", UID, f"clients/{OTHER_UID}/notifications", "space_a").code == "PERMISSION_DENIED"
    assert fm("get_banker_batches", OTHER_UID, NOTIFS, "space_a").code == "PERMISSION_DENIED"
    assert fm("get_banker_batches", UID, f"clients/{UID}/task_manager", "space_a").code == "INVALID_ARGS"
    assert fm("get_banker_batches", UID, f"{NOTIFS}/b1", "space_a").code == "INVALID_ARGS"
    assert fm("get_banker_batches", UID, NOTIFS, "a/b").code == "INVALID_ARGS"


def test_save_banker_batch_creates_then_replaces_keeping_created_at(fm, fsdb, mandate):
    batch_id = fm("save_banker_batch", mandate, {"bank_account": "CH93", "transactions": [{"Id": "t1"}]}).data
    assert batch_id.startswith("batch_")
    stored = fsdb.document(f"{mandate}/banking_batches/{batch_id}").get().to_dict()
    assert stored["batch_id"] == batch_id and stored["created_by"] == UID and stored["bank_account"] == "CH93"
    assert isinstance(stored["created_at"], dt.datetime) and isinstance(stored["updated_at"], dt.datetime)
    assert fm("save_banker_batch", mandate, {"bank_account": "CH93"}).data != batch_id  # no same-second collision

    assert fm("save_banker_batch", mandate, {"bank_account": "CH00"}, batch_id).data == batch_id
    replaced = fsdb.document(f"{mandate}/banking_batches/{batch_id}").get().to_dict()
    assert replaced["bank_account"] == "CH00" and "transactions" not in replaced
    assert replaced["created_at"] == stored["created_at"] and replaced["updated_at"] >= stored["updated_at"]


def test_save_banker_batch_refuses_bad_input(fm, fsdb, mandate):
    other = mandate.replace(UID, OTHER_UID)
    assert fm("save_banker_batch", other, {"bank_account": "x"}).code == "PERMISSION_DENIED"
    assert fm("save_banker_batch", f"clients/{UID}/notifications/x", {"a": 1}).code == "INVALID_ARGS"
    assert fm("save_banker_batch", mandate, {"a": 1}, "a/b").code == "INVALID_ARGS"
    assert fm("save_banker_batch", mandate, "not a dict").code == "INVALID_ARGS"
    assert list(fsdb.collection(f"{mandate}/banking_batches").stream()) == []


def test_working_doc_create_get_and_download(fm, fsdb, mandate):
    assert fm("download_pending_item_docsheet", mandate).data == {}
    assert not fsdb.document(DOCSHEET).get().exists  # reading creates nothing
    assert fm("create_or_get_working_doc_2", mandate).data == DOCSHEET
    assert fsdb.document(DOCSHEET).get().to_dict() == {}
    fsdb.document(DOCSHEET).set({"items": {"0": {"Id": 7, "amount": 10}}})
    assert fm("create_or_get_working_doc_2", mandate).data == DOCSHEET  # an existing document is kept
    assert fm("download_pending_item_docsheet", mandate).data == {"items": {"0": {"Id": 7, "amount": 10}}}

    missing = f"clients/{UID}/bo_clients/client_a/mandates/nope"
    assert fm("download_pending_item_docsheet", missing).code == "NOT_FOUND"
    assert fm("create_or_get_working_doc_2", missing).code == "NOT_FOUND"
    assert not fsdb.document(f"{missing}/working_doc/pending_item_docsheet").get().exists
    assert fm("download_pending_item_docsheet", mandate.replace(UID, OTHER_UID)).code == "PERMISSION_DENIED"


def test_delete_specific_pending_transactions_removes_only_the_given_ids(fm, fsdb, mandate):
    items = {"0": {"Id": 101, "amount": 1}, "1": {"Id": "102", "amount": 2}, "2": {"Id": 103, "amount": 3},
             "x.y": {"Id": 104}}
    fsdb.document(DOCSHEET).set({"items": items, "sheet": "pending"})
    ok, updated = fm("delete_specific_pending_transactions", mandate, ["101", 102, "104"]).data
    assert ok is True and updated == {"items": {"2": {"Id": 103, "amount": 3}}, "sheet": "pending"}
    assert fsdb.document(DOCSHEET).get().to_dict() == updated
    assert fm("delete_specific_pending_transactions", mandate, ["999"]).data == [True, updated]  # nothing matched


def test_delete_specific_pending_transactions_refuses_bad_input(fm, fsdb, mandate):
    assert fm("delete_specific_pending_transactions", mandate, ["1"]).code == "NOT_FOUND"  # no document
    fsdb.document(DOCSHEET).set({"items": "broken"})
    assert fm("delete_specific_pending_transactions", mandate, ["1"]).code == "NOT_FOUND"
    fsdb.document(DOCSHEET).set({"items": {"0": {"Id": 1}}})
    assert fm("delete_specific_pending_transactions", mandate, [True]).code == "INVALID_ARGS"
    assert fm("delete_specific_pending_transactions", mandate, "1").code == "INVALID_ARGS"
    other = mandate.replace(UID, OTHER_UID)
    assert fm("delete_specific_pending_transactions", other, ["1"]).code == "PERMISSION_DENIED"
    assert fsdb.document(DOCSHEET).get().to_dict() == {"items": {"0": {"Id": 1}}}
