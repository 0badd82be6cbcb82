"""FIREBASE_MANAGEMENT departments and journals, through /rpc against the Firestore emulator."""
from __future__ import annotations

import datetime as dt

import pytest

from .conftest import OTHER_UID, UID

KLK = f"clients/{UID}/klk_vision"
TODO = "documents/accounting/invoices/doc_to_do"
BOOKED = "documents/invoices/doc_booked"


@pytest.fixture
def journals(fsdb):
    fsdb.document(f"{KLK}/dept_ap").set({"departement": "APbookeeper"})
    fsdb.document(f"{KLK}/dept_router").set({"departement": "Router"})
    rows = {
        "e1": ("dept_ap", "m1", TODO, "to_process", "j1"),
        "e2": ("dept_ap", "m1", TODO, "pending", "j2"),
        "e3": ("dept_ap", "m1", BOOKED, "close", "j3"),
        "e4": ("dept_ap", "m1", TODO, "rejection", "j4"),
        "e5": ("dept_ap", "m2", TODO, "to_process", "j5"),
        "r1": ("dept_router", "m1", "router/src", "to_process", "j6"),
    }
    for entry_id, (dept, mandat, source, status, job_id) in rows.items():
        fsdb.document(f"{KLK}/{dept}/journal/{entry_id}").set(
            {"mandat_id": mandat, "source": source, "status": status, "job_id": job_id, "file_name": f"{entry_id}.pdf"})
    return rows


def _ids(entries):
    return sorted(e["firebase_doc_id"] for e in entries)


def test_open_and_close_job_ids(fm, journals):
    open_jobs = fm("get_open_job_id", UID, 4, "m1").data
    assert [j["fb_doc_id"] for j in open_jobs] == ["e1"] and open_jobs[0]["job_id"] == "j1"
    assert [j["fb_doc_id"] for j in fm("get_close_job_id", UID, 4, "m1").data] == ["e3"]
    assert fm("get_close_job_id", UID, 2, "m1").data == []
    assert fm("get_open_job_id", UID, 6, "m1").code == "INVALID_ARGS"


def test_fetch_variants(fm, journals):
    by_jobs = fm("fetch_journal_entries_by_mandat_id_and_job_ids", UID, "m1", TODO, "APbookeeper", ["j1", "j4", "j5"]).data
    assert _ids(by_jobs) == ["e1"]
    assert by_jobs[0]["path"] == f"{KLK}/dept_ap/journal/e1" and by_jobs[0]["data"]["job_id"] == "j1"
    assert _ids(fm("fetch_journal_entries", UID, "m1", "APbookeeper").data) == ["e1", "e2", "e3", "e4"]
    assert _ids(fm("fetch_journal_entries", UID, "m1", "APbookeeper", ["j1", "j2"], "pending").data) == ["e2"]
    assert _ids(fm("fetch_journal_entries_by_mandat_id_without_source", UID, "m1", "APbookeeper").data) == ["e1", "e3"]
    assert _ids(fm("fetch_journal_entries_by_mandat_id", UID, "m1", TODO, "APbookeeper").data) == ["e1", "e2"]
    assert _ids(fm("fetch_pending_journal_entries_by_mandat_id", UID, "m1", TODO, "APbookeeper").data) == ["e2"]
    journals_, paths = fm("fetch_job_journals_by_mandat_id", UID, "m2").data
    assert journals_[0]["job_id"] == "j5" and paths == [f"{KLK}/dept_ap/journal/e5"]
    assert fm("fetch_journal_entries", OTHER_UID, "m1", "APbookeeper").code == "PERMISSION_DENIED"


def test_departments_and_chat_threadkey(fm, fsdb, journals):
    assert fm("find_matching_department", UID, "Router").data == "dept_router"
    assert fm("find_matching_department", UID, "HRmanager").code == "NOT_FOUND"
    key = fm("create_or_get_chat_threadkey", UID, "Router").data
    assert key.startswith("klk_") and key.endswith("_Router")
    assert fm("create_or_get_chat_threadkey", UID, "Router").data == key
    assert fsdb.document(f"{KLK}/dept_router").get().to_dict()["chat_threadkey"] == key
    assert fm("create_or_get_chat_threadkey", UID, "Nope").code == "INVALID_ARGS"


def test_upload_to_firebase_adds_a_journal_entry(fm, fsdb, journals):
    entry_id = fm("upload_to_firebase", UID, {"pinnokio_func": "Router", "job_id": "j9", "mandat_id": "m1"}).data
    stored = fsdb.document(f"{KLK}/dept_router/journal/{entry_id}").get().to_dict()
    assert stored["job_id"] == "j9" and isinstance(stored["timestamp"], dt.datetime)
    assert fm("upload_to_firebase", UID, {"pinnokio_func": "HRmanager"}).code == "NOT_FOUND"


def test_single_status_changes(fm, fsdb, journals):
    path = f"{KLK}/dept_ap/journal/e1"
    assert fm("update_status_to_pending", path).data is True
    assert fsdb.document(path).get().to_dict()["status"] == "pending"
    assert fm("update_document_process_status", path).data is True
    assert fsdb.document(path).get().to_dict()["status"] == "on_process"
    assert fm("update_status_to_pending", f"{KLK}/dept_ap/journal/missing").code == "NOT_FOUND"
    assert fm("update_status_to_pending", f"clients/{OTHER_UID}/klk_vision/d/journal/e").code == "PERMISSION_DENIED"


def test_freeze_and_unfreeze_are_all_or_nothing(fm, fsdb, journals):
    entries = fm("fetch_journal_entries", UID, "m1", "APbookeeper", ["j1", "j2"]).data
    assert fm("freeze_job_list", entries, UID).data == 2
    statuses = {e: fsdb.document(f"{KLK}/dept_ap/journal/{e}").get().to_dict()["status"] for e in ("e1", "e2", "e3")}
    assert statuses == {"e1": "in_queue", "e2": "in_queue", "e3": "close"}

    broken = [*entries, {"path": f"{KLK}/dept_ap/journal/missing"}]
    fsdb.document(f"{KLK}/dept_ap/journal/e1").update({"status": "to_process"})
    assert fm("freeze_job_list", broken, UID).code == "NOT_FOUND"
    assert fsdb.document(f"{KLK}/dept_ap/journal/e1").get().to_dict()["status"] == "to_process"  # nothing half-written

    fsdb.document(f"{KLK}/dept_ap/journal/e1").update({"status": "on_process"})
    assert fm("unfreeze_job_list", [*broken, {"path": f"{KLK}/dept_ap/journal/e3"}], UID).data == 2
    statuses = {e: fsdb.document(f"{KLK}/dept_ap/journal/{e}").get().to_dict()["status"] for e in ("e1", "e2", "e3")}
    assert statuses == {"e1": "to_process", "e2": "to_process", "e3": "close"}


def test_freeze_refuses_other_paths(fm, fsdb, journals):
    assert fm("freeze_job_list", [{"path": f"clients/{OTHER_UID}/klk_vision/d/journal/e"}], UID).code == "PERMISSION_DENIED"
    assert fm("freeze_job_list", [{"path": f"clients/{UID}/notifications/x"}], UID).code == "INVALID_ARGS"
    assert fm("freeze_job_list", {"path": f"{KLK}/dept_ap/journal/e1"}, UID).data == 1
    assert fm("freeze_job_list", [{"path": f"{KLK}/dept_ap/journal/e1"}], OTHER_UID).code == "PERMISSION_DENIED"


def test_add_timestamp_and_upload_to_firebase(fm, fsdb, journals):
    entry_id = fm("add_timestamp_and_upload_to_firebase", {"pinnokio_func": "APbookeeper", "job_id": "j10"}, UID).data
    stored = fsdb.document(f"{KLK}/dept_ap/journal/{entry_id}").get().to_dict()
    assert stored["job_id"] == "j10" and isinstance(stored["timestamp"], dt.datetime)
    assert fm("add_timestamp_and_upload_to_firebase", {"pinnokio_func": "HRmanager"}, UID).code == "NOT_FOUND"
    assert fm("add_timestamp_and_upload_to_firebase", {"job_id": "j11"}, UID).code == "INVALID_ARGS"
    assert fm("add_timestamp_and_upload_to_firebase", {"pinnokio_func": "Router"}, OTHER_UID).code == "PERMISSION_DENIED"
    assert len(list(fsdb.collection(f"{KLK}/dept_router/journal").stream())) == 1  # only the fixture's entry


def test_search_files_in_firebase(fm, journals):
    found = fm("search_files_in_firebase", UID, {"mandat_id": "m1"}, ["e3.pdf", "e1.pdf", "e5.pdf", "r1.pdf"],
               ["APbookeeper", "HRmanager", "Router"]).data
    assert found["success"] is True and found["message"].startswith("3 fichier(s)")
    assert [e["file_name"] for e in found["data"]] == ["e3.pdf", "e1.pdf", "r1.pdf"]  # file_names order, per department
    assert {e["mandat_id"] for e in found["data"]} == {"m1"}
    single = fm("search_files_in_firebase", UID, {"mandat_id": "m2"}, "e5.pdf", "APbookeeper").data
    assert [e["job_id"] for e in single["data"]] == ["j5"]


def test_search_files_in_firebase_errors(fm, journals):
    assert fm("search_files_in_firebase", UID, {"mandat_id": "m1"}, ["nope.pdf"], ["APbookeeper"]).code == "NOT_FOUND"
    assert fm("search_files_in_firebase", UID, {"mandat_id": "m1"}, ["e1.pdf"], ["HRmanager"]).code == "NOT_FOUND"
    assert fm("search_files_in_firebase", UID, {"mandat_id": "m1"}, ["e1.pdf"], []).code == "INVALID_ARGS"
    assert fm("search_files_in_firebase", UID, {}, ["e1.pdf"], ["APbookeeper"]).code == "INVALID_ARGS"
    assert fm("search_files_in_firebase", UID, {"mandat_id": "m1"}, [1], ["APbookeeper"]).code == "INVALID_ARGS"
    other = fm("search_files_in_firebase", OTHER_UID, {"mandat_id": "m1"}, ["e1.pdf"], ["APbookeeper"])
    assert other.code == "PERMISSION_DENIED"
