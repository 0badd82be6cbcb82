"""Jobs and notifications: ``clients/{uid}/notifications``, ``task_manager`` clean-up and token usage.

Layout kept from the original service, which the Reflex app reads as it is (README, "Namespaces"): a notification document is keyed
by ``job_id`` (or ``file_id`` / ``batch_id``) and carries job_id, file_id, batch_id, file_name, status, read,
collection_id, collection_name, function_name, timestamp, additional_info. ``timestamp`` is always a Firestore
timestamp set by the server (the original also wrote ISO strings from ``update_job_status``, which broke ordering).
"""
from __future__ import annotations

from typing import Any

import structlog
from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1 import DocumentReference, FieldFilter

from core.integrations.firebase import get_firestore
from realtime.events import NOTIF_JOB_UPDATED
from realtime.publisher import publish_event
from core.errors import InvalidArgs, NotFound, PermissionDenied
from rpc.types import OwnDocId, UserId, UserPath

from .namespaces import FIREBASE_MANAGEMENT
from .store import (
    MAX_BATCH_WRITES, MAX_IN_VALUES, chunks, client_path, delete_documents, require_collection_path, require_id,
    with_id,
)
from .types import DocIdList, Limit, Payload, ShortText

log = structlog.get_logger(__name__)



def _notifications(uid: str) -> firestore.CollectionReference:
    return get_firestore().collection(client_path(uid, "notifications"))


def _is_notifications_collection(path: str) -> bool:
    segments = path.split("/")
    return len(segments) == 3 and segments[0] == "clients" and segments[2] == "notifications"


def _publish_job_updated(uid: str, collection_path: str, job: dict[str, Any]) -> None:
    """Publish-after-write: only called once the Firestore write has succeeded."""
    payload = {
        "job_id": job.get("job_id"),
        "batch_id": job.get("batch_id"),
        "function_name": job.get("function_name"),
        "status": job.get("status"),
        "collection_path": collection_path,
    }
    publish_event(uid, NOTIF_JOB_UPDATED, payload)


# The collections (directly under clients/{uid}/) the generic job writers may touch. Everything else, billing/
# (balances, expenses, transactions) first, is server-owned (README, "Security", rule 4).
JOB_COLLECTIONS = frozenset({"notifications", "task_manager"})


def _merge_job(collection_path: str, job_data: dict[str, Any], id_key: str) -> tuple[str, str]:
    """One merge write keyed by ``job_data[id_key]`` (no read first: a merge creates or updates alike)."""
    path = require_collection_path("collection_path", collection_path)
    segments = path.split("/")
    if len(segments) != 3 or segments[2] not in JOB_COLLECTIONS:
        raise PermissionDenied(f"collection_path must be clients/{{user_id}}/ followed by one of {sorted(JOB_COLLECTIONS)}")
    if id_key not in job_data:
        raise InvalidArgs(f"job_data must contain {id_key!r}")
    doc_id = require_id(f"job_data.{id_key}", job_data[id_key])
    get_firestore().collection(path).document(doc_id).set({**job_data, "timestamp": firestore.SERVER_TIMESTAMP}, merge=True)
    return path, doc_id


@FIREBASE_MANAGEMENT.method(writes=True)
def add_or_update_job_by_job_id(collection_path: UserPath, job_data: Payload) -> str:
    """Create or merge the document ``{collection_path}/{job_data.job_id}``; returns the job_id. ``collection_path``
    is ``clients/{uid}/notifications`` or ``clients/{uid}/task_manager`` (else PERMISSION_DENIED: server-owned data).

    Writing into ``clients/{uid}/notifications`` then publishes ``notif.job_updated`` (job_id, batch_id,
    function_name, status, collection_path) on ``user:{uid}``. ``timestamp`` is set by the server.
    """
    path, job_id = _merge_job(collection_path, job_data, "job_id")
    if _is_notifications_collection(path):
        _publish_job_updated(path.split("/")[1], path, job_data)
    return job_id


@FIREBASE_MANAGEMENT.method(writes=True)
def add_or_update_job_by_file_id(collection_path: UserPath, job_data: Payload) -> str:
    """Create or merge ``{collection_path}/{job_data.file_id}``; returns the file_id. Publishes nothing (as before)."""
    return _merge_job(collection_path, job_data, "file_id")[1]


@FIREBASE_MANAGEMENT.method(writes=True)
def add_or_update_job_by_batch_id(collection_path: UserPath, job_data: Payload) -> str:
    """Create or merge ``{collection_path}/{job_data.batch_id}``; returns the batch_id. Publishes nothing (as before)."""
    return _merge_job(collection_path, job_data, "batch_id")[1]


@FIREBASE_MANAGEMENT.method(writes=False)
def check_job_status(user_id: UserId, job_id: OwnDocId | None = None, file_id: OwnDocId | None = None) -> dict[str, Any]:
    """The notification document of ``file_id`` (checked first, as in the original) or ``job_id``, with
    ``document_id`` added. NOT_FOUND when it does not exist (the original returned None)."""
    doc_id = file_id or job_id
    if doc_id is None:
        raise InvalidArgs("give job_id or file_id")
    snapshot = _notifications(user_id).document(doc_id).get()
    if not snapshot.exists:
        raise NotFound(f"no notification {doc_id!r}")
    return with_id(snapshot, "document_id")


def _find_notification(uid: str, job_id: str) -> firestore.DocumentSnapshot:
    """Direct lookup by document id, then by the ``job_id`` field (documents keyed by file_id/batch_id): two
    indexed reads at most, never a collection scan."""
    collection = _notifications(uid)
    snapshot = collection.document(job_id).get()
    if snapshot.exists:
        return snapshot
    matches = collection.where(filter=FieldFilter("job_id", "==", job_id)).limit(1).get()
    if matches:
        return matches[0]
    raise NotFound(f"no notification for job {job_id!r}")


@FIREBASE_MANAGEMENT.method(writes=True)
def update_job_status(
    user_id: UserId, job_id: OwnDocId, new_status: ShortText, additional_info: Payload | str | None = None
) -> bool:
    """Set ``status`` (and ``additional_info`` when given) of the job's notification; ``timestamp`` becomes the
    server time. Publishes ``notif.job_updated``. NOT_FOUND when the job has no notification (was ``False``)."""
    snapshot = _find_notification(user_id, job_id)
    changes: dict[str, Any] = {"status": new_status, "timestamp": firestore.SERVER_TIMESTAMP}
    if additional_info is not None:
        changes["additional_info"] = additional_info
    try:
        snapshot.reference.update(changes)
    except gexc.NotFound:  # deleted between the lookup and the update
        raise NotFound(f"no notification for job {job_id!r}") from None
    job = {**(snapshot.to_dict() or {}), "status": new_status}
    job.setdefault("job_id", job_id)
    _publish_job_updated(user_id, client_path(user_id, "notifications"), job)
    return True


def _notification_refs(uid: str, job_ids: list[str], *, unread_only: bool = False) -> list[DocumentReference]:
    """Notifications of these jobs: documents keyed by the id, plus documents whose ``job_id`` field matches."""
    if not job_ids:
        return []
    db = get_firestore()
    collection = _notifications(uid)
    found: dict[str, DocumentReference] = {}
    for snapshot in db.get_all([collection.document(job_id) for job_id in job_ids]):
        if snapshot.exists and not (unread_only and (snapshot.to_dict() or {}).get("read") is True):
            found[snapshot.reference.path] = snapshot.reference
    for group in chunks(job_ids, MAX_IN_VALUES):
        query = collection.where(filter=FieldFilter("job_id", "in", group))
        if unread_only:
            query = query.where(filter=FieldFilter("read", "==", False))
        for snapshot in query.stream():
            found[snapshot.reference.path] = snapshot.reference
    return list(found.values())


@FIREBASE_MANAGEMENT.method(writes=True)
def delete_notifications(user_id: UserId, job_id: OwnDocId | DocIdList | None = None) -> bool:
    """Delete the notifications of one job or a list of jobs (at most 500), in one batch.
    NOT_FOUND when none matched (the original returned False); INVALID_ARGS without job_id."""
    if not job_id:
        raise InvalidArgs("give a job_id or a list of job_ids")
    job_ids = [job_id] if isinstance(job_id, str) else job_id
    refs = _notification_refs(user_id, job_ids)
    if not refs:
        raise NotFound("no notification for these job ids")
    delete_documents(refs)
    return True


def _newest_first(query: firestore.Query, limit: int) -> list[dict[str, Any]]:
    """Order by ``timestamp`` desc. Production Firestore needs the composite index (read ASC, timestamp DESC), see
    README; without it the query fails with FAILED_PRECONDITION and we fall back to sorting one unordered page."""
    try:
        return [with_id(s) for s in query.order_by("timestamp", direction=firestore.Query.DESCENDING).limit(limit).stream()]
    except gexc.FailedPrecondition:
        log.warning("notifications_index_missing", hint="deploy the composite index (read, timestamp desc)")
        items = [with_id(s) for s in query.limit(limit).stream()]
        return sorted(items, key=lambda item: str(item.get("timestamp") or ""), reverse=True)


@FIREBASE_MANAGEMENT.method(writes=False)
def get_unread_notifications(user_id: UserId, limit: Limit = 50) -> list[dict[str, Any]]:
    """Unread notifications, newest first, each with its document ``id``."""
    return _newest_first(_notifications(user_id).where(filter=FieldFilter("read", "==", False)), limit)


@FIREBASE_MANAGEMENT.method(writes=False)
def get_notifications(user_id: UserId, read: bool | None = None, limit: Limit = 100) -> list[dict[str, Any]]:
    """Notifications filtered on ``read`` (None: all), in document-id order as before, each with its ``id``."""
    query: firestore.Query = _notifications(user_id)
    if read is not None:
        query = query.where(filter=FieldFilter("read", "==", read))
    return [with_id(s) for s in query.limit(limit).stream()]


@FIREBASE_MANAGEMENT.method(writes=True)
def mark_notifications_read(user_id: UserId, job_ids: DocIdList | None = None) -> int:
    """Set ``read: true`` on the notifications of these jobs, or on every unread one when ``job_ids`` is None
    (500 per batch). Returns how many documents changed."""
    collection = _notifications(user_id)
    if job_ids is not None:
        refs = _notification_refs(user_id, job_ids, unread_only=True)
        _update_all(refs, {"read": True})
        return len(refs)
    changed = 0
    while True:  # each pass marks a page read, so the next query returns the following page
        page = [s.reference for s in collection.where(filter=FieldFilter("read", "==", False)).limit(MAX_BATCH_WRITES).stream()]
        if not page:
            return changed
        _update_all(page, {"read": True})
        changed += len(page)


def _update_all(refs: list[DocumentReference], changes: dict[str, Any]) -> None:
    db = get_firestore()
    for group in chunks(refs, MAX_BATCH_WRITES):
        batch = db.batch()
        for ref in group:
            batch.update(ref, changes)
        batch.commit()


@FIREBASE_MANAGEMENT.method(writes=True)
def restart_job(user_id: UserId, job_id: OwnDocId) -> bool:
    """Reset a job for a new run, atomically: the job document is replaced by
    ``{APBookkeeper_step_status: 'DOCUMENT_EXTRACTION'}`` (the original's exact write, which also clears the
    ``document.initial_data`` map) and the legacy ``document/initial_data`` and ``internal_message/audit_report``
    documents are deleted. NOT_FOUND when the job does not exist (was ``False``)."""
    db = get_firestore()
    job_ref = db.document(client_path(user_id, "task_manager", job_id))

    @firestore.transactional
    def reset(transaction: firestore.Transaction) -> None:
        if not job_ref.get(transaction=transaction).exists:
            raise NotFound(f"no job {job_id!r}")
        transaction.set(job_ref, {"APBookkeeper_step_status": "DOCUMENT_EXTRACTION"})
        transaction.delete(job_ref.collection("document").document("initial_data"))
        transaction.delete(job_ref.collection("internal_message").document("audit_report"))

    reset(db.transaction())
    return True


# The Reflex app also calls it by this name; it was already a synchronous alias in the original.
@FIREBASE_MANAGEMENT.method(writes=True, name="async_delete_items_by_job_id")
@FIREBASE_MANAGEMENT.method(writes=True)
def delete_items_by_job_id(user_id: UserId, job_ids: OwnDocId | DocIdList) -> bool:
    """Delete each job's ``task_manager`` document with its subcollections, and its journal entries in every
    department of ``klk_vision``. Writes go in batches of 500; a retry after a failure completes the deletion."""
    db = get_firestore()
    ids = [job_ids] if isinstance(job_ids, str) else list(job_ids)
    refs: list[DocumentReference] = []
    for job_id in ids:
        job_ref = db.document(client_path(user_id, "task_manager", job_id))
        for subcollection in job_ref.collections():
            refs.extend(subcollection.list_documents())
        refs.append(job_ref)
    for department in db.collection(client_path(user_id, "klk_vision")).list_documents():
        for group in chunks(ids, MAX_IN_VALUES):
            journal = department.collection("journal").where(filter=FieldFilter("job_id", "in", group))
            refs.extend(snapshot.reference for snapshot in journal.stream())
    delete_documents(refs)
    return True


@FIREBASE_MANAGEMENT.method(writes=True)
def upload_token_usage(user_id: UserId, data: Payload) -> bool:
    """Append ``data`` to ``clients/{uid}/token_usage/{data.job_id}.entries`` in a transaction, so concurrent
    uploads never lose an entry (the original's read-modify-write did; ArrayUnion would merge equal entries)."""
    db = get_firestore()
    job_id = require_id("data.job_id", data.get("job_id"))
    ref = db.document(client_path(user_id, "token_usage", job_id))

    @firestore.transactional
    def append(transaction: firestore.Transaction) -> None:
        snapshot = ref.get(transaction=transaction)
        entries = list((snapshot.to_dict() or {}).get("entries", [])) if snapshot.exists else []
        entries.append(data)
        transaction.set(ref, {"entries": entries}, merge=True)

    append(db.transaction())
    return True
