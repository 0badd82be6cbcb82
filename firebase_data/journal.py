"""Departments and their journals: ``clients/{uid}/klk_vision/{dept}`` (field ``departement``) →
``journal/{entry}`` (mandat_id, source, status, job_id, file_name…), §2.4.

Entries are returned as {data, path, firebase_doc_id} with the FULL tenant path (the original returned
``klk_vision/...`` root paths, so a later status change wrote to the legacy root collection). Status changes take
those paths back and only ever touch journal entries of the caller.
"""
from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1 import FieldFilter

from core.integrations.firebase import get_firestore
from core.errors import InvalidArgs, NotFound, PermissionDenied
from rpc.types import Bounded, MaxLen, OwnDocId, UserId, UserPath, path_owner

from .namespaces import FIREBASE_MANAGEMENT
from .store import MAX_BATCH_WRITES, MAX_IN_VALUES, chunks, client_path, require_id
from .types import DocIdList, Payload, ShortText

# The original addressed departments by their position in this list.
DEPARTMENTS = ("Admanager", "EXbookeeper", "Router", "Bankbookeeper", "APbookeeper", "HRmanager")
DepartmentIndex = Annotated[int, Bounded(0, len(DEPARTMENTS) - 1)]
DepartmentName = Literal["Admanager", "EXbookeeper", "Router", "Bankbookeeper", "APbookeeper", "HRmanager"]
BOOKED_SOURCE = "documents/invoices/doc_booked"
TO_DO_SOURCE = "documents/accounting/invoices/doc_to_do"
JournalEntries = Annotated[list[dict], MaxLen(MAX_BATCH_WRITES)]
FileNames = Annotated[list[ShortText], MaxLen(MAX_BATCH_WRITES)]
DepartmentNames = Annotated[list[ShortText], MaxLen(50)]


def _departments(uid: str, departement: str) -> list[firestore.DocumentSnapshot]:
    query = get_firestore().collection(client_path(uid, "klk_vision"))
    return list(query.where(filter=FieldFilter("departement", "==", departement)).stream())


def _entries(
    uid: str, departement: str, filters: dict[str, Any], *, first_department_only: bool = True
) -> list[dict[str, Any]]:
    """Journal entries of the department(s) named ``departement`` matching the equality ``filters``."""
    departments = _departments(uid, departement)
    found = []
    for department in departments[:1] if first_department_only else departments:
        query: firestore.Query = department.reference.collection("journal")
        for field, value in filters.items():
            query = query.where(filter=FieldFilter(field, "==", value))
        for entry in query.stream():
            found.append({"data": entry.to_dict() or {}, "path": entry.reference.path, "firebase_doc_id": entry.id})
    return found


def _with_fb_doc_id(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**entry["data"], "fb_doc_id": entry["firebase_doc_id"]} for entry in entries]


@FIREBASE_MANAGEMENT.method(writes=False)
def get_open_job_id(user_id: UserId, departement: DepartmentIndex, space_id: OwnDocId) -> list[dict[str, Any]]:
    """Entries to process (status ``to_process``, source doc_to_do) of a mandate, each with ``fb_doc_id``."""
    filters = {"status": "to_process", "source": TO_DO_SOURCE, "mandat_id": space_id}
    return _with_fb_doc_id(_entries(user_id, DEPARTMENTS[departement], filters, first_department_only=False))


@FIREBASE_MANAGEMENT.method(writes=False)
def get_close_job_id(user_id: UserId, departement: DepartmentIndex, space_id: OwnDocId) -> list[dict[str, Any]]:
    """Booked entries (status ``close``, source doc_booked) of a mandate; as before only APbookeeper has them."""
    if DEPARTMENTS[departement] != "APbookeeper":
        return []
    filters = {"status": "close", "source": BOOKED_SOURCE, "mandat_id": space_id}
    return _with_fb_doc_id(_entries(user_id, "APbookeeper", filters, first_department_only=False))


@FIREBASE_MANAGEMENT.method(writes=False)
def fetch_journal_entries_by_mandat_id_and_job_ids(
    user_id: UserId, mandat_id: OwnDocId, source: ShortText, departement: ShortText, job_ids: DocIdList
) -> list[dict[str, Any]]:
    """Entries of these jobs (status other than ``rejection``) for a mandate and source."""
    wanted = set(job_ids)
    entries = _entries(user_id, departement, {"mandat_id": mandat_id, "source": source})
    return [e for e in entries if e["data"].get("status") != "rejection" and e["data"].get("job_id") in wanted]


@FIREBASE_MANAGEMENT.method(writes=False)
def fetch_journal_entries(
    user_id: UserId, mandat_id: OwnDocId, departement: ShortText, job_ids: DocIdList | None = None,
    status: ShortText | None = None,
) -> list[dict[str, Any]]:
    """Entries of a mandate in every department with that name, optionally only these jobs and/or this status."""
    filters: dict[str, Any] = {"mandat_id": mandat_id}
    if status is not None:
        filters["status"] = status
    entries = _entries(user_id, departement, filters, first_department_only=False)
    if job_ids is not None:
        wanted = set(job_ids)
        entries = [e for e in entries if e["data"].get("job_id") in wanted]
    return entries


@FIREBASE_MANAGEMENT.method(writes=False)
def fetch_journal_entries_by_mandat_id_without_source(
    user_id: UserId, mandat_id: OwnDocId, departement: ShortText
) -> list[dict[str, Any]]:
    """Entries of a mandate, any source, except ``rejection`` and ``pending``."""
    entries = _entries(user_id, departement, {"mandat_id": mandat_id})
    return [e for e in entries if e["data"].get("status") not in ("rejection", "pending")]


@FIREBASE_MANAGEMENT.method(writes=False)
def fetch_journal_entries_by_mandat_id(
    user_id: UserId, mandat_id: OwnDocId, source: ShortText, departement: ShortText
) -> list[dict[str, Any]]:
    """Entries of a mandate and source, except ``rejection``."""
    entries = _entries(user_id, departement, {"mandat_id": mandat_id, "source": source})
    return [e for e in entries if e["data"].get("status") != "rejection"]


@FIREBASE_MANAGEMENT.method(writes=False)
def fetch_pending_journal_entries_by_mandat_id(
    user_id: UserId, mandat_id: OwnDocId, source: ShortText, departement: ShortText
) -> list[dict[str, Any]]:
    """Entries of a mandate and source with status ``pending`` (the Pending tab)."""
    return _entries(user_id, departement, {"mandat_id": mandat_id, "source": source, "status": "pending"})


@FIREBASE_MANAGEMENT.method(writes=False)
def fetch_job_journals_by_mandat_id(user_id: UserId, mandat_id: OwnDocId) -> tuple[list[dict], list[str]]:
    """[entries, paths] of a mandate across all departments (one query per department)."""
    journals, paths = [], []
    for department in get_firestore().collection(client_path(user_id, "klk_vision")).list_documents():
        for entry in department.collection("journal").where(filter=FieldFilter("mandat_id", "==", mandat_id)).stream():
            journals.append(entry.to_dict() or {})
            paths.append(entry.reference.path)
    return journals, paths


@FIREBASE_MANAGEMENT.method(writes=False)
def find_matching_department(user_id: UserId, pinnokio_func: ShortText) -> str:
    """Id of the department document whose ``departement`` is ``pinnokio_func``. NOT_FOUND (was None)."""
    matches = _departments(user_id, pinnokio_func)
    if not matches:
        raise NotFound(f"no department {pinnokio_func!r}")
    return matches[0].id


@FIREBASE_MANAGEMENT.method(writes=True)
def upload_to_firebase(user_id: UserId, log_entry: Payload) -> str:
    """Add ``log_entry`` (with a server ``timestamp``) to the journal of the department named by its
    ``pinnokio_func``; returns the new entry id. NOT_FOUND when there is no such department (was silent)."""
    function = log_entry.get("pinnokio_func")
    if not isinstance(function, str):
        raise InvalidArgs("log_entry.pinnokio_func must be a department name")
    department_id = find_matching_department(user_id, function)
    journal = get_firestore().collection(client_path(user_id, "klk_vision", department_id, "journal"))
    _, ref = journal.add({**log_entry, "timestamp": firestore.SERVER_TIMESTAMP})
    return ref.id


@FIREBASE_MANAGEMENT.method(writes=True)
def add_timestamp_and_upload_to_firebase(log_entry: Payload, user_id: UserId) -> str:
    """Same as upload_to_firebase (the server sets ``timestamp``); returns the new entry id. ``user_id`` is new
    (second): the original called ``upload_to_firebase`` without it, so it always failed."""
    return upload_to_firebase(user_id, log_entry)


@FIREBASE_MANAGEMENT.method(writes=False)
def search_files_in_firebase(
    user_id: UserId, log_entry: Payload, file_names: ShortText | FileNames, funcs_list: ShortText | DepartmentNames
) -> dict[str, Any]:
    """Journal entries of the mandate ``log_entry.mandat_id`` whose ``file_name`` is one of ``file_names``, in the
    (first) department named by each of ``funcs_list``; unknown departments are skipped, as before. Returns
    {success: true, message, data: [entry data]}, in ``file_names`` order per department. NOT_FOUND when nothing
    matches (was {success: false, message}); INVALID_ARGS without a department or a ``mandat_id``."""
    mandat_id = require_id("log_entry.mandat_id", log_entry.get("mandat_id"))
    names = list(dict.fromkeys([file_names] if isinstance(file_names, str) else file_names))
    functions = list(dict.fromkeys([funcs_list] if isinstance(funcs_list, str) else funcs_list))
    if not functions:
        raise InvalidArgs("funcs_list must name at least one department")
    position = {name: index for index, name in enumerate(names)}
    found: list[dict[str, Any]] = []
    for function in functions:
        departments = _departments(user_id, function)
        if not departments:
            continue
        journal = departments[0].reference.collection("journal").where(filter=FieldFilter("mandat_id", "==", mandat_id))
        entries = [e.to_dict() or {} for group in chunks(names, MAX_IN_VALUES)
                   for e in journal.where(filter=FieldFilter("file_name", "in", group)).stream()]
        found.extend(sorted(entries, key=lambda entry: position.get(entry.get("file_name"), len(names))))
    if not found:
        raise NotFound("no journal entry of this mandate has these file names")
    return {"success": True, "message": f"{len(found)} fichier(s) trouvé(s) pour les critères donnés.", "data": found}


@FIREBASE_MANAGEMENT.method(writes=True)
def create_or_get_chat_threadkey(user_id: UserId, department_index: DepartmentName) -> str:
    """The department's ``chat_threadkey``, created once (``klk_{uuid}_{department}``) in a transaction."""
    matches = _departments(user_id, department_index)
    if not matches:
        raise NotFound(f"no department {department_index!r}")
    db = get_firestore()
    ref = matches[0].reference

    @firestore.transactional
    def get_or_create(transaction: firestore.Transaction) -> str:
        current = (ref.get(transaction=transaction).to_dict() or {}).get("chat_threadkey")
        if current:
            return current
        key = f"klk_{uuid.uuid4().hex}_{department_index}"
        transaction.update(ref, {"chat_threadkey": key})
        return key

    return get_or_create(db.transaction())


# --- status changes ---------------------------------------------------------------------------------------------------
def _journal_ref(uid: str, path: Any) -> firestore.DocumentReference:
    """A journal entry path of this user: ``clients/{uid}/klk_vision/{dept}/journal/{entry}``, nothing else."""
    if not isinstance(path, str):
        raise InvalidArgs("each entry needs a 'path' string")
    segments = path.strip("/").split("/")
    if len(segments) != 6 or segments[2] != "klk_vision" or segments[4] != "journal" or not all(segments):
        raise InvalidArgs("path must be a journal entry: clients/{uid}/klk_vision/{dept}/journal/{entry}")
    if segments[:2] != ["clients", uid]:
        raise PermissionDenied("path must be under clients/<envelope user_id>/")
    return get_firestore().document("/".join(segments))


def _set_status(ref: firestore.DocumentReference, status: str) -> bool:
    try:
        ref.update({"status": status})
    except gexc.NotFound:
        raise NotFound("no journal entry at this path") from None
    return True


# Both take a journal entry path only (the allow-list of rule 4): a status written anywhere else could be a
# server-owned document's (a top-up transaction's, an expense's).
@FIREBASE_MANAGEMENT.method(writes=True)
def update_status_to_pending(firebase_path: UserPath) -> bool:
    """Set ``status: pending`` on one journal entry (``clients/{uid}/klk_vision/{dept}/journal/{entry}``, else
    INVALID_ARGS). NOT_FOUND when it does not exist (was silent)."""
    return _set_status(_journal_ref(path_owner(firebase_path), firebase_path), "pending")


@FIREBASE_MANAGEMENT.method(writes=True)
def update_document_process_status(document_path: UserPath) -> bool:
    """Set ``status: on_process`` on one journal entry (else INVALID_ARGS). NOT_FOUND when it does not exist."""
    return _set_status(_journal_ref(path_owner(document_path), document_path), "on_process")


def _entry_refs(entries: list[dict] | dict, uid: str) -> list[firestore.DocumentReference]:
    listed = [entries] if isinstance(entries, dict) else entries
    return [_journal_ref(uid, entry.get("path")) for entry in listed]


@FIREBASE_MANAGEMENT.method(writes=True)
def freeze_job_list(entries_with_paths: JournalEntries | Payload, user_id: UserId) -> int:
    """Set ``status: in_queue`` on every entry ({path, ...} as returned by the fetch methods), in one batch: all or
    nothing (a missing entry fails the whole batch with NOT_FOUND). Returns how many entries changed.

    ``user_id`` is new (second): the paths must be the caller's, and methods only learn the caller through it."""
    refs = _entry_refs(entries_with_paths, user_id)
    batch = get_firestore().batch()
    for ref in refs:
        batch.update(ref, {"status": "in_queue"})
    try:
        batch.commit()
    except gexc.NotFound:
        raise NotFound("a journal entry of the list does not exist; nothing was changed") from None
    return len(refs)


@FIREBASE_MANAGEMENT.method(writes=True)
def unfreeze_job_list(entries_with_paths: JournalEntries | Payload, user_id: UserId) -> int:
    """Move entries that are ``in_queue``/``on_process`` back to ``to_process``, in one transaction (read and write
    see the same state); other and missing entries are left alone. Returns how many changed."""
    db = get_firestore()
    refs = _entry_refs(entries_with_paths, user_id)

    @firestore.transactional
    def release(transaction: firestore.Transaction) -> int:
        changed = 0
        for snapshot in db.get_all(refs, transaction=transaction):
            if snapshot.exists and (snapshot.to_dict() or {}).get("status") in ("in_queue", "on_process"):
                transaction.update(snapshot.reference, {"status": "to_process"})
                changed += 1
        return changed

    return release(db.transaction())
