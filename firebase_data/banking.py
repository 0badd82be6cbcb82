"""Banking: banker batches and the pending-items working document of a mandate (§2.2, §2.7).

Layout kept from the original: banker jobs are notifications (``function_name: banker``) of
``clients/{uid}/notifications`` with their job document in ``clients/{uid}/task_manager/{job_id}``; saved batches
are ``{mandate_path}/banking_batches/{batch_id}``; the pending bank transactions are the ``items`` map
({key: {Id, ...}}) of ``{mandate_path}/working_doc/pending_item_docsheet``.
"""
from __future__ import annotations

import secrets
import time
from typing import Annotated, Any

from google.api_core.exceptions import AlreadyExists
from google.cloud import firestore
from google.cloud.firestore_v1 import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from core.integrations.firebase import get_firestore
from core.errors import InvalidArgs, NotFound
from rpc.types import Identifier, InUserTree, MaxLen, OwnDocId, UserId, UserPath, path_owner

from .mandates import require_mandate_path
from .namespaces import FIREBASE_MANAGEMENT
from .store import client_path, require_collection_path
from .types import Payload

# Notification statuses of a banker batch that is still being processed (the original's list).
ACTIVE_BANKER_STATUSES = ["running", "in queue", "stopping", "stopped"]
# Items of the scoped mandate's own working document.
TransactionIds = Annotated[list[Annotated[str, MaxLen(200)] | int], MaxLen(500), InUserTree()]
DOCSHEET = "working_doc/pending_item_docsheet"


@FIREBASE_MANAGEMENT.method(writes=False)
def get_banker_batches(user_id: UserId, notifications_path: UserPath, collection_id: OwnDocId) -> list[dict[str, Any]]:
    """Banker batches of one company (``collection_id``) still in process, as {notification_id, job_id, status,
    bank_account, timestamp, transactions, collection_id}; ``transactions`` comes from the job's
    ``payload.jobs_data[0]`` when that list is longer. One query and one batched read (the original read each job)."""
    path = require_collection_path("notifications_path", notifications_path)
    if path != client_path(user_id, "notifications"):
        raise InvalidArgs("notifications_path must be clients/{user_id}/notifications")
    db = get_firestore()
    query = db.collection(path).where(filter=FieldFilter("function_name", "==", "banker")).where(
        filter=FieldFilter("collection_id", "==", collection_id)).where(
        filter=FieldFilter("status", "in", ACTIVE_BANKER_STATUSES))
    batches = []
    for snapshot in query.stream():
        data = snapshot.to_dict() or {}
        batches.append({
            "notification_id": snapshot.id, "job_id": data.get("job_id", snapshot.id), "status": data.get("status", ""),
            "bank_account": data.get("bank_account", ""), "timestamp": data.get("timestamp", ""),
            "transactions": data.get("transactions", []), "collection_id": data.get("collection_id", ""),
        })
    tasks = db.collection(client_path(user_id, "task_manager"))
    job_refs = list({b["job_id"]: tasks.document(b["job_id"]) for b in batches if _is_doc_id(b["job_id"])}.values())
    jobs = {s.id: s.to_dict() or {} for s in db.get_all(job_refs) if s.exists} if job_refs else {}
    for batch in batches:
        payload = jobs.get(batch["job_id"], {}).get("payload") if _is_doc_id(batch["job_id"]) else None
        jobs_data = payload.get("jobs_data") if isinstance(payload, dict) else None
        if isinstance(jobs_data, list) and jobs_data and isinstance(jobs_data[0], dict):
            transactions = jobs_data[0].get("transactions")
            current = batch["transactions"] if isinstance(batch["transactions"], list) else []
            if isinstance(transactions, list) and len(transactions) > len(current):
                batch["transactions"] = transactions
    return batches


def _is_doc_id(value: Any) -> bool:
    """Whether a stored ``job_id`` can address a task_manager document (stored data is not validated input)."""
    if not isinstance(value, str):
        return False
    try:
        Identifier().check("job_id", value)
    except InvalidArgs:
        return False
    return True


@FIREBASE_MANAGEMENT.method(writes=True)
def save_banker_batch(mandate_path: UserPath, batch_data: Payload, batch_id: OwnDocId | None = None) -> str:
    """Write ``{mandate_path}/banking_batches/{batch_id}`` (replacing it) with ``batch_id``, ``created_by`` (the
    mandate's owner), ``created_at`` (kept when the batch already existed) and ``updated_at``; returns the id.
    Without ``batch_id`` a new ``batch_{epoch_s}_{random}`` is used (the original's ``batch_{epoch_s}`` collided
    within a second, and it always failed on an undefined ``user_id``)."""
    path = require_mandate_path("mandate_path", mandate_path)
    key = batch_id or f"batch_{int(time.time())}_{secrets.token_hex(4)}"
    db = get_firestore()
    ref = db.document(f"{path}/banking_batches/{key}")

    @firestore.transactional
    def write(transaction: firestore.Transaction) -> None:
        current = ref.get(transaction=transaction)
        created_at = (current.to_dict() or {}).get("created_at") if current.exists else None
        transaction.set(ref, {
            **batch_data, "batch_id": key, "created_by": path_owner(path),
            "created_at": created_at or firestore.SERVER_TIMESTAMP, "updated_at": firestore.SERVER_TIMESTAMP,
        })

    write(db.transaction())
    return key


def _existing_mandate(path: str) -> firestore.DocumentReference:
    ref = get_firestore().document(path)
    if not ref.get().exists:
        raise NotFound("no mandate at this path")
    return ref


@FIREBASE_MANAGEMENT.method(writes=True)
def create_or_get_working_doc_2(mandate_path: UserPath) -> str:
    """Create ``{mandate_path}/working_doc/pending_item_docsheet`` (empty) unless it exists; returns its path (the
    original returned a DocumentReference, which cannot cross RPC). NOT_FOUND when the mandate does not exist."""
    doc = _existing_mandate(require_mandate_path("mandate_path", mandate_path)).collection("working_doc").document(
        "pending_item_docsheet")
    try:
        doc.create({})
    except AlreadyExists:  # existing content is never overwritten
        pass
    return doc.path


@FIREBASE_MANAGEMENT.method(writes=False)
def download_pending_item_docsheet(mandate_path: UserPath) -> dict[str, Any]:
    """The pending-items document ({} when there is none). Reads only: the original created it on the way.
    NOT_FOUND when the mandate does not exist."""
    path = require_mandate_path("mandate_path", mandate_path)
    db = get_firestore()
    mandate_ref, doc_ref = db.document(path), db.document(f"{path}/{DOCSHEET}")
    read = {s.reference.path: s for s in db.get_all([mandate_ref, doc_ref])}
    if not read[mandate_ref.path].exists:
        raise NotFound("no mandate at this path")
    docsheet = read[doc_ref.path]
    return (docsheet.to_dict() or {}) if docsheet.exists else {}


@FIREBASE_MANAGEMENT.method(writes=True)
def delete_specific_pending_transactions(
    mandate_path: UserPath, transaction_ids: TransactionIds
) -> tuple[bool, dict[str, Any]]:
    """Remove the ``items`` whose ``Id`` is one of ``transaction_ids`` (compared as text, as before), leaving the
    others, in a transaction; returns [true, the document after the change]. NOT_FOUND when the document has no
    ``items`` map (was [false, null])."""
    path = require_mandate_path("mandate_path", mandate_path)
    wanted = {str(value) for value in transaction_ids}
    db = get_firestore()
    ref = db.document(f"{path}/{DOCSHEET}")

    @firestore.transactional
    def remove(transaction: firestore.Transaction) -> dict[str, Any]:
        snapshot = ref.get(transaction=transaction)
        data = (snapshot.to_dict() or {}) if snapshot.exists else {}
        items = data.get("items")
        if not isinstance(items, dict):
            raise NotFound("this mandate has no pending items")
        matched = [key for key, item in items.items() if isinstance(item, dict) and str(item.get("Id")) in wanted]
        if matched:
            transaction.update(ref, {FieldPath("items", key).to_api_repr(): firestore.DELETE_FIELD for key in matched})
        return {**data, "items": {key: item for key, item in items.items() if key not in matched}}

    return True, remove(db.transaction())
