"""Task manager: ``clients/{uid}/task_manager/{job_id}`` and its ``internal_message`` documents (§2.3).

The job document holds ``APBookeeper_step_status`` {step: count}, ``Document_information`` and the
``document.initial_data`` map that the WorkflowListener watches. The original wrote invoice data only to the
subcollection document ``document/initial_data``, so those writes never produced ``workflow.invoice_update``;
here the map field is the source of truth and the legacy document is mirrored in the same batch for old readers.
"""
from __future__ import annotations

import ast
from typing import Annotated, Any

from google.cloud import firestore

from core.integrations.firebase import get_firestore
from core.errors import NotFound
from rpc.types import MaxLen, OwnDocId, Public, UserId

from .namespaces import FIREBASE_MANAGEMENT
from .store import client_path, utc_now
from .types import DocIdList, LongText, Payload, ShortText

AuditText = LongText | Payload
ChatHistory = Annotated[list, MaxLen(5000)]
InstanceLabel = Annotated[ShortText, Public("a worker instance label recorded on the user's jobs")]


def _job(uid: str, job_id: str) -> firestore.DocumentReference:
    return get_firestore().document(client_path(uid, "task_manager", job_id))


def _internal(uid: str, job_id: str, name: str) -> firestore.DocumentReference:
    return _job(uid, job_id).collection("internal_message").document(name)


def _existing_job(uid: str, job_id: str) -> dict[str, Any]:
    snapshot = _job(uid, job_id).get()
    if not snapshot.exists:
        raise NotFound(f"no job {job_id!r}")
    return snapshot.to_dict() or {}


@FIREBASE_MANAGEMENT.method(writes=True)
def upload_document_to_task_job_id(user_id: UserId, job_id: OwnDocId, initial_document_data: Payload) -> bool:
    """Merge the invoice data into ``document.initial_data`` on the job (watched: emits workflow.invoice_update)
    and into the legacy ``document/initial_data`` document, in one batch."""
    job = _job(user_id, job_id)
    batch = get_firestore().batch()
    batch.set(job, {"document": {"initial_data": initial_document_data}}, merge=True)
    batch.set(job.collection("document").document("initial_data"), {"initial_data": initial_document_data}, merge=True)
    batch.commit()
    return True


@FIREBASE_MANAGEMENT.method(writes=False)
def download_document_to_task_job_id(user_id: UserId, job_id: OwnDocId) -> dict[str, Any]:
    """{"initial_data": {...}} as before, read from the map field, or from the legacy document for jobs written by
    the original service. NOT_FOUND when neither exists (was ``False``)."""
    job = _job(user_id, job_id)
    snapshot = job.get()
    initial = ((snapshot.to_dict() or {}).get("document") or {}).get("initial_data") if snapshot.exists else None
    if initial is not None:
        return {"initial_data": initial}
    legacy = job.collection("document").document("initial_data").get()
    if legacy.exists:
        return legacy.to_dict() or {}
    raise NotFound(f"no document data for job {job_id!r}")


@FIREBASE_MANAGEMENT.method(writes=False)
def download_invoice_step(user_id: UserId, job_id: OwnDocId) -> Any:
    """``APBookeeper_step_status`` of the job (None when unset). NOT_FOUND for a missing job — the original returned
    the text "Document non trouvé." and, because of a bug, always read the legacy root path."""
    return _existing_job(user_id, job_id).get("APBookeeper_step_status")


@FIREBASE_MANAGEMENT.method(writes=True)
def upload_invoice_step(user_id: UserId, job_id: OwnDocId, invoice_step: Payload | ShortText) -> bool:
    """Set ``APBookeeper_step_status`` ({step: count}, watched: emits workflow.step_update)."""
    _job(user_id, job_id).set({"APBookeeper_step_status": invoice_step}, merge=True)
    return True


@FIREBASE_MANAGEMENT.method(writes=True)
def upload_metadatas_to_job_id(user_id: UserId, job_id: OwnDocId, metadata: Payload) -> bool:
    """Set ``Document_information`` on the job."""
    _job(user_id, job_id).set({"Document_information": metadata}, merge=True)
    return True


@FIREBASE_MANAGEMENT.method(writes=False)
def get_uri_drive_link_and_file_name(user_id: UserId, job_id: OwnDocId) -> dict[str, str]:
    """{"link", "file_name"} from ``Document_information``; NOT_FOUND when the job or either value is missing
    (the original returned an error sentence as a string)."""
    info = _existing_job(user_id, job_id).get("Document_information") or {}
    link, file_name = info.get("uri_file_link"), info.get("file_name")
    if not link or not file_name:
        raise NotFound(f"job {job_id!r} has no drive link or file name")
    return {"link": link, "file_name": file_name}


@FIREBASE_MANAGEMENT.method(writes=True)
def upload_aws_instance_id(user_id: UserId, job_ids: DocIdList, aws_instance_id: InstanceLabel) -> bool:
    """Record ``aws_instance_id`` on every job of the list, in one batch."""
    batch = get_firestore().batch()
    for job_id in job_ids:  # at most 500 (DocIdList), so one batch
        batch.set(_job(user_id, job_id), {"aws_instance_id": aws_instance_id}, merge=True)
    batch.commit()
    return True


@FIREBASE_MANAGEMENT.method(writes=False)
def get_batch_details(user_id: UserId, batch_id: OwnDocId) -> dict[str, Any]:
    """{job_id, bank_account, transactions, start_instructions} of a banking batch job. NOT_FOUND when missing."""
    data = _existing_job(user_id, batch_id)
    details: dict[str, Any] = {"job_id": batch_id, "bank_account": "", "transactions": [], "start_instructions": ""}
    jobs_data = data.get("jobs_data")
    if isinstance(jobs_data, list) and jobs_data and isinstance(jobs_data[0], dict):
        details["bank_account"] = jobs_data[0].get("bank_account", "")
        if isinstance(jobs_data[0].get("transactions"), list):
            details["transactions"] = jobs_data[0]["transactions"]
    details["start_instructions"] = data.get("start_instructions", "")
    if not details["bank_account"]:
        details["bank_account"] = data.get("journal_name", "")
    return details


# --- internal messages, chat history, audit reports ------------------------------------------------------------------
@FIREBASE_MANAGEMENT.method(writes=True)
def upload_chat_history(user_id: UserId, job_id: OwnDocId, chat_history: ChatHistory) -> bool:
    """Add messages to ``internal_message/chat_history.messages`` (ArrayUnion, as before: equal messages merge).
    An empty list adds nothing (Firestore refuses an empty ArrayUnion)."""
    if not chat_history:
        return True
    _internal(user_id, job_id, "chat_history").set({"messages": firestore.ArrayUnion(chat_history)}, merge=True)
    return True


@FIREBASE_MANAGEMENT.method(writes=True)
def add_message_to_internal_message(
    user_id: UserId, job_id: OwnDocId, message: LongText, sent_to: Payload, sent_from: ShortText
) -> bool:
    """Add message ``n+1`` ({datetime, message, sent_to, send_from}) to ``internal_message/messages``, in a
    transaction so two writers never take the same number."""
    db = get_firestore()
    ref = _internal(user_id, job_id, "messages")

    @firestore.transactional
    def append(transaction: firestore.Transaction) -> None:
        snapshot = ref.get(transaction=transaction)
        number = len(snapshot.to_dict() or {}) + 1 if snapshot.exists else 1
        entry = {"datetime": utc_now(), "message": message, "sent_to": sent_to, "send_from": sent_from}
        transaction.set(ref, {str(number): entry}, merge=True)

    append(db.transaction())
    return True


@FIREBASE_MANAGEMENT.method(writes=False)
def get_internal_message(user_id: UserId, job_id: OwnDocId) -> tuple[str | None, dict[str, Any]]:
    """[formatted_text, messages]; [None, {}] when the job has no messages (the original's empty value)."""
    snapshot = _internal(user_id, job_id, "messages").get()
    if not snapshot.exists:
        return None, {}
    messages = snapshot.to_dict() or {}
    lines = []
    for key, entry in sorted(messages.items(), key=lambda item: int(item[0]) if item[0].isdigit() else 0):
        stamp = entry.get("datetime")
        sent_to = entry.get("sent_to") or {}
        lines.append(
            f"Message {key} envoyé le {stamp.strftime('%Y-%m-%d %H:%M:%S') if hasattr(stamp, 'strftime') else stamp}:\n"
            f"Expéditeurs: {entry.get('send_from')}\nReceveur: {sent_to.get('service', 'N/A')}\n"
            f"Motivation: {sent_to.get('motivation', '')}\n"
        )
    return "".join(lines), messages


def _set_audit_field(uid: str, job_id: str, field: str, value: Any) -> bool:
    _internal(uid, job_id, "audit_report").set({field: value}, merge=True)
    return True


@FIREBASE_MANAGEMENT.method(writes=True)
def upload_audit_report_posting_check(user_id: UserId, job_id: OwnDocId, audit_report_text: AuditText) -> bool:
    """Set ``posting_check`` in ``internal_message/audit_report``."""
    return _set_audit_field(user_id, job_id, "posting_check", audit_report_text)


@FIREBASE_MANAGEMENT.method(writes=True)
def upload_audit_report_archive_check(user_id: UserId, job_id: OwnDocId, audit_report_text: AuditText) -> bool:
    """Set ``archive_check`` in ``internal_message/audit_report``."""
    return _set_audit_field(user_id, job_id, "archive_check", audit_report_text)


@FIREBASE_MANAGEMENT.method(writes=True)
def upload_audit_report_contact_check(user_id: UserId, job_id: OwnDocId, audit_report_text: AuditText) -> bool:
    """Set ``contact_check`` in ``internal_message/audit_report``."""
    return _set_audit_field(user_id, job_id, "contact_check", audit_report_text)


@FIREBASE_MANAGEMENT.method(writes=True)
def upload_audit_report_booking_check(user_id: UserId, job_id: OwnDocId, audit_report_text: AuditText) -> bool:
    """Set ``booking_check`` in ``internal_message/audit_report``."""
    return _set_audit_field(user_id, job_id, "booking_check", audit_report_text)


@FIREBASE_MANAGEMENT.method(writes=True)
def upload_audit_report_contact_creation_check(user_id: UserId, job_id: OwnDocId, audit_report_text: AuditText) -> bool:
    """Set ``contact_creation_check`` in ``internal_message/audit_report``."""
    return _set_audit_field(user_id, job_id, "contact_creation_check", audit_report_text)


@FIREBASE_MANAGEMENT.method(writes=True)
def upload_audit_report_is_invoice_check(user_id: UserId, job_id: OwnDocId, audit_report_text: Payload) -> bool:
    """Merge the given fields into ``internal_message/audit_report`` (this one takes a map, as before)."""
    _internal(user_id, job_id, "audit_report").set(audit_report_text, merge=True)
    return True


@FIREBASE_MANAGEMENT.method(writes=True)
def upload_auditor_review_on_step(user_id: UserId, job_id: OwnDocId, audit_report_text: AuditText) -> bool:
    """Set ``step_review`` ({step_key: {step_name: {report}}}) in ``internal_message/audit_report``."""
    return _set_audit_field(user_id, job_id, "step_review", audit_report_text)


@FIREBASE_MANAGEMENT.method(writes=False)
def download_auditor_review_on_step(user_id: UserId, job_id: OwnDocId) -> dict[str, Any]:
    """{"step_name": {name: {"report": text}}} flattened from ``step_review``; empty when there is none."""
    snapshot = _internal(user_id, job_id, "audit_report").get()
    review = (snapshot.to_dict() or {}).get("step_review", {}) if snapshot.exists else {}
    steps: dict[str, dict[str, str]] = {}
    if isinstance(review, dict):
        for step in review.values():
            for name, details in (step or {}).items():
                steps[name] = {"report": (details or {}).get("report", "")}
    return {"step_name": steps}


@FIREBASE_MANAGEMENT.method(writes=False)
def transforme_audit_report_in_text(audit_report_text: AuditText) -> str | dict:
    """The text log of a ``step_review`` map (pure; a non-map is returned unchanged, as before)."""
    if not isinstance(audit_report_text, dict):
        return audit_report_text
    text = "Historique de log:\n"
    for step in audit_report_text.values():
        for name, details in (step or {}).items():
            text += f"Nom de l'étape: {name}\nDetail:\n{(details or {}).get('report', '')}\n\n"
    return text


@FIREBASE_MANAGEMENT.method(writes=True)
def upload_auditor_apbookeeper_chat_with_user(user_id: UserId, job_id: OwnDocId, chat_history: ChatHistory) -> bool:
    """Append a session {timestamp, messages} to ``internal_message/chat_messages.sessions`` (transaction)."""
    db = get_firestore()
    ref = _internal(user_id, job_id, "chat_messages")

    @firestore.transactional
    def append(transaction: firestore.Transaction) -> None:
        snapshot = ref.get(transaction=transaction)
        sessions = list((snapshot.to_dict() or {}).get("sessions", [])) if snapshot.exists else []
        sessions.append({"timestamp": utc_now(), "messages": chat_history})
        transaction.set(ref, {"sessions": sessions}, merge=True)

    append(db.transaction())
    return True


@FIREBASE_MANAGEMENT.method(writes=False)
def download_auditor_apbookeeper_chat_with_user(user_id: UserId, job_id: OwnDocId) -> str:
    """The last chat session as text ("Session n:\\nrole: content\\n…"). NOT_FOUND when there is none (was None)."""
    snapshot = _internal(user_id, job_id, "chat_messages").get()
    sessions = (snapshot.to_dict() or {}).get("sessions", []) if snapshot.exists else []
    if not sessions:
        raise NotFound(f"no chat session for job {job_id!r}")
    messages = sessions[-1].get("messages", "")
    if isinstance(messages, str):  # older sessions stored the Python repr of the list
        try:
            messages = ast.literal_eval(messages)
        except (ValueError, SyntaxError):
            return f"Session {len(sessions) - 1}:\n{messages}\n\n"
    if not isinstance(messages, list):
        return f"Session {len(sessions) - 1}:\n{messages}\n\n"
    lines = []
    for entry in messages:
        if isinstance(entry, dict):
            content = str(entry.get("content", "")).replace("\\n", "\n")  # escaped newlines were stored as text
            lines.append(f"{entry.get('role', 'unknown')}: {content}\n")
    return f"Session {len(sessions) - 1}:\n" + "".join(lines) + "\n"
