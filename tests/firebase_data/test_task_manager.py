"""FIREBASE_MANAGEMENT task manager methods, through /rpc against the Firestore emulator."""
from __future__ import annotations

import datetime as dt

import pytest

from .conftest import OTHER_UID, UID

TASKS = f"clients/{UID}/task_manager"


def _job(fsdb, job_id="job_1"):
    return fsdb.document(f"{TASKS}/{job_id}")


def test_upload_document_writes_the_watched_map_and_the_legacy_document(fm, fsdb):
    invoice = {"invoiceReference": "INV-1", "sender": "ACME", "totalAmountDueVATIncluded": 120.5}
    assert fm("upload_document_to_task_job_id", UID, "job_1", invoice).data is True
    assert _job(fsdb).get().to_dict()["document"]["initial_data"] == invoice
    assert _job(fsdb).collection("document").document("initial_data").get().to_dict() == {"initial_data": invoice}

    fm("upload_document_to_task_job_id", UID, "job_1", {"currency": "CHF"})
    assert _job(fsdb).get().to_dict()["document"]["initial_data"] == {**invoice, "currency": "CHF"}  # merged, as before
    assert fm("download_document_to_task_job_id", UID, "job_1").data == {"initial_data": {**invoice, "currency": "CHF"}}


def test_download_document_reads_jobs_written_by_the_original(fm, fsdb):
    _job(fsdb, "old").collection("document").document("initial_data").set({"initial_data": {"sender": "Legacy"}})
    assert fm("download_document_to_task_job_id", UID, "old").data == {"initial_data": {"sender": "Legacy"}}
    assert fm("download_document_to_task_job_id", UID, "none").code == "NOT_FOUND"
    assert fm("download_document_to_task_job_id", OTHER_UID, "old").code == "PERMISSION_DENIED"


def test_invoice_step_and_metadata(fm, fsdb):
    assert fm("download_invoice_step", UID, "job_1").code == "NOT_FOUND"
    assert fm("upload_invoice_step", UID, "job_1", {"extraction": 1, "booking": 0}).data is True
    assert fm("download_invoice_step", UID, "job_1").data == {"extraction": 1, "booking": 0}
    meta = {"file_name": "inv.pdf", "uri_file_link": "https://drive/x"}
    assert fm("upload_metadatas_to_job_id", UID, "job_1", meta).data is True
    stored = _job(fsdb).get().to_dict()
    assert stored == {"APBookeeper_step_status": {"extraction": 1, "booking": 0}, "Document_information": meta}
    assert fm("get_uri_drive_link_and_file_name", UID, "job_1").data == {"link": "https://drive/x", "file_name": "inv.pdf"}
    fm("upload_metadatas_to_job_id", UID, "job_2", {"file_name": "x.pdf"})
    assert fm("get_uri_drive_link_and_file_name", UID, "job_2").code == "NOT_FOUND"


def test_upload_aws_instance_id_and_batch_details(fm, fsdb):
    _job(fsdb, "batch_1").set({"jobs_data": [{"bank_account": "CH12", "transactions": [{"id": "t1"}]}],
                             "start_instructions": "go"})
    assert fm("upload_aws_instance_id", UID, ["batch_1", "job_9"], "i-123").data is True
    assert _job(fsdb, "job_9").get().to_dict() == {"aws_instance_id": "i-123"}
    details = fm("get_batch_details", UID, "batch_1").data
    assert details == {"job_id": "batch_1", "bank_account": "CH12", "transactions": [{"id": "t1"}],
                       "start_instructions": "go"}
    assert fm("get_batch_details", UID, "nope").code == "NOT_FOUND"


def test_internal_messages_are_numbered_in_order(fm, fsdb):
    assert fm("get_internal_message", UID, "job_1").data == [None, {}]
    for text in ("first", "second"):
        assert fm("add_message_to_internal_message", UID, "job_1", text, {"service": "AP", "motivation": "check"},
                  "router").data is True
    text, messages = fm("get_internal_message", UID, "job_1").data
    assert sorted(messages) == ["1", "2"] and messages["2"]["message"] == "second"
    assert messages["1"]["datetime"].endswith("Z")
    assert "Message 1 envoyé le" in text and "Receveur: AP" in text and "Expéditeurs: router" in text
    stored = _job(fsdb).collection("internal_message").document("messages").get().to_dict()
    assert isinstance(stored["1"]["datetime"], dt.datetime)


def test_chat_history_union(fm, fsdb):
    fm("upload_chat_history", UID, "job_1", [{"role": "user", "content": "a"}])
    fm("upload_chat_history", UID, "job_1", [{"role": "user", "content": "a"}, {"role": "ai", "content": "b"}])
    stored = _job(fsdb).collection("internal_message").document("chat_history").get().to_dict()
    assert stored["messages"] == [{"role": "user", "content": "a"}, {"role": "ai", "content": "b"}]


@pytest.mark.parametrize("suffix,field", [
    ("posting_check", "posting_check"), ("archive_check", "archive_check"), ("contact_check", "contact_check"),
    ("booking_check", "booking_check"), ("contact_creation_check", "contact_creation_check"),
])
def test_audit_report_fields(fm, fsdb, suffix, field):
    assert fm(f"upload_audit_report_{suffix}", UID, "job_1", f"{field} ok").data is True
    fm("upload_audit_report_is_invoice_check", UID, "job_1", {"is_invoice": True})
    stored = _job(fsdb).collection("internal_message").document("audit_report").get().to_dict()
    assert stored == {field: f"{field} ok", "is_invoice": True}


def test_auditor_review_round_trip_and_text(fm):
    review = {"0": {"extraction": {"report": "read 3 lines"}}, "1": {"booking": {"report": "booked"}}}
    assert fm("download_auditor_review_on_step", UID, "job_1").data == {"step_name": {}}
    assert fm("upload_auditor_review_on_step", UID, "job_1", review).data is True
    assert fm("download_auditor_review_on_step", UID, "job_1").data == {
        "step_name": {"extraction": {"report": "read 3 lines"}, "booking": {"report": "booked"}}}
    text = fm("transforme_audit_report_in_text", review).data
    assert text.startswith("Historique de log:\n") and "Nom de l'étape: booking\nDetail:\nbooked" in text
    assert fm("transforme_audit_report_in_text", "plain").data == "plain"


def test_auditor_chat_sessions(fm, fsdb):
    assert fm("download_auditor_apbookeeper_chat_with_user", UID, "job_1").code == "NOT_FOUND"
    fm("upload_auditor_apbookeeper_chat_with_user", UID, "job_1", [{"role": "user", "content": "old"}])
    fm("upload_auditor_apbookeeper_chat_with_user", UID, "job_1",
       [{"role": "user", "content": "why?"}, {"role": "assistant", "content": "because\\nreasons"}])
    assert fm("download_auditor_apbookeeper_chat_with_user", UID, "job_1").data == (
        "Session 1:\nuser: why?\nassistant: because\nreasons\n\n")
    sessions = _job(fsdb).collection("internal_message").document("chat_messages").get().to_dict()["sessions"]
    assert len(sessions) == 2 and isinstance(sessions[0]["timestamp"], dt.datetime)
