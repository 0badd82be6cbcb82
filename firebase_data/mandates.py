"""Mandates: ``clients/{uid}/bo_clients/{client}/mandates/{mandate}`` (the "mandate_path"), with ``erp/*``,
``context/*`` and ``setup/{workflow_params,function_table}`` below it (§2.5, §2.8).

``fetch_all_mandates`` costs a constant 4 round trips whatever the number of mandates: one collection-group query
per kind (mandates, erp, context) restricted to the caller's subtree, and one batched read of the parents and
workflow parameters. The original ran an unfiltered collection-group query over every tenant, then 4 reads per mandate.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from google.api_core.exceptions import AlreadyExists
from google.cloud import firestore

from core.integrations.firebase import get_firestore
from core.errors import InvalidArgs, NotFound
from core.tenancy import forget_user_spaces, subtree_range
from rpc.types import UserId, UserPath

from .defaults import reference_defaults
from .namespaces import FIREBASE_MANAGEMENT
from .store import (
    MAX_BATCH_WRITES, client_path, delete_documents, descendants, owned_by, require_document_path,
)
from .types import ShortText

MANDATE_FIELDS = (
    "contact_space_name", "contact_space_id", "bank_erp", "drive_space_parent_id", "gl_accounting_erp",
    "input_drive_doc_id", "legal_name", "main_doc_drive_id", "output_drive_doc_id", "ap_erp", "ar_erp",
    "base_currency", "dms_type", "chat_type", "communication_log_type",
)
PARENT_FIELDS = ("client_mail", "client_name", "client_address", "client_phone", "client_uuid", "drive_client_parent_id")
WORKFLOW_DEFAULTS: dict[str, dict[str, Any]] = {
    "Apbookeeper_param": {"apbookeeper_approval_contact_creation": False, "apbookeeper_approval_required": False,
                          "apbookeeper_communication_method": ""},
    "Router_param": {"router_approval_required": False, "router_automated_workflow": False,
                     "router_communication_method": ""},
    "Banker_param": {"banker_communication_method": "", "banker_approval_required": False,
                     "banker_approval_thresholdworkflow": ""},
}
# Filled in from the stored parameters (the original's quirk: a stored Banker_param defaults the threshold to 0).
_WORKFLOW_STORED_DEFAULTS = {**WORKFLOW_DEFAULTS, "Banker_param": {**WORKFLOW_DEFAULTS["Banker_param"],
                                                                   "banker_approval_thresholdworkflow": 0}}
ROUTER_CONTEXT_KEYS = {
    "invoices_context": "invoices", "expenses_context": "expenses", "banks_cash_context": "banks_cash",
    "hr_context": "hr", "taxes_context": "taxes", "letters_context": "letters", "contrats_context": "contrats",
    "financial_statement_context": "financial_statement",
}


def require_mandate_path(name: str, path: str) -> str:
    clean = require_document_path(name, path)
    segments = clean.split("/")
    if len(segments) != 6 or segments[2] != "bo_clients" or segments[4] != "mandates":
        raise InvalidArgs(f"{name} must be clients/{{uid}}/bo_clients/{{client}}/mandates/{{mandate}}")
    return clean


def _workflow_params(snapshot: firestore.DocumentSnapshot | None) -> dict[str, Any]:
    params = {key: dict(value) for key, value in WORKFLOW_DEFAULTS.items()}
    stored = (snapshot.to_dict() or {}) if snapshot is not None and snapshot.exists else {}
    for key, defaults in _WORKFLOW_STORED_DEFAULTS.items():
        if key in stored:
            params[key] = {field: (stored[key] or {}).get(field, default) for field, default in defaults.items()}
    return params


def _parent_details(parent_path: str, snapshot: firestore.DocumentSnapshot | None) -> dict[str, Any]:
    if snapshot is None or not snapshot.exists:
        return {"error": f"Parent document not found for path: {parent_path}"}
    data = snapshot.to_dict() or {}
    return {"parent_doc_id": parent_path.split("/")[-1], **{field: data.get(field, "") for field in PARENT_FIELDS}}


def _context_details(contexts: list[firestore.DocumentSnapshot]) -> dict[str, Any]:
    details: dict[str, Any] = {}
    for context in contexts:
        data = context.to_dict() or {}
        if context.id == "accounting_context":
            details["accounting_context"] = (data.get("data") or {}).get("accounting_context_0", {})
        elif context.id == "general_context":
            details["general_context"] = data.get("context_company_profile_report", "")
        elif context.id == "router_context" and data.get("router_prompt"):
            prompt = data["router_prompt"]
            details.update({key: prompt.get(source, "") for key, source in ROUTER_CONTEXT_KEYS.items()})
    return details


def _assemble(
    mandate: firestore.DocumentSnapshot, parent: firestore.DocumentSnapshot | None,
    workflow: firestore.DocumentSnapshot | None, erps: list[firestore.DocumentSnapshot],
    contexts: list[firestore.DocumentSnapshot],
) -> dict[str, Any]:
    data = mandate.to_dict() or {}
    result: dict[str, Any] = {"id": mandate.id, **{field: data.get(field, "") for field in MANDATE_FIELDS}}
    result["isactive"] = data.get("isactive", True)
    parent_path = mandate.reference.parent.parent.path
    result["parent_details"] = _parent_details(parent_path, parent)
    result["workflow_params"] = _workflow_params(workflow)
    result["erp_details"] = {erp.id: erp.to_dict() or {} for erp in erps} or {"info": "No ERP documents found"}
    result["context_details"] = _context_details(contexts)
    return result


def _owned_mandates(uid: str) -> list[firestore.DocumentSnapshot]:
    """Every mandate under ``clients/{uid}/bo_clients`` in one query (no other tenant's documents are read)."""
    snapshots = subtree_range(get_firestore().collection_group("mandates"), uid).stream()
    return [s for s in snapshots if owned_by(s.reference.path, uid) and s.reference.path.split("/")[2] == "bo_clients"]


def _children_by_mandate(uid: str, collection_id: str) -> dict[str, list[firestore.DocumentSnapshot]]:
    grouped: dict[str, list[firestore.DocumentSnapshot]] = defaultdict(list)
    for snapshot in subtree_range(get_firestore().collection_group(collection_id), uid).stream():
        grouped[snapshot.reference.parent.parent.path].append(snapshot)
    return grouped


@FIREBASE_MANAGEMENT.method(writes=False)
def fetch_all_mandates(user_id: UserId) -> list[dict[str, Any]]:
    """Every active mandate of the caller: {id, <mandate fields>, isactive, parent_details, workflow_params,
    erp_details, context_details} — the original's shape."""
    db = get_firestore()
    mandates = [m for m in _owned_mandates(user_id) if (m.to_dict() or {}).get("isactive", True)]
    if not mandates:
        return []
    parents = [m.reference.parent.parent for m in mandates]
    workflows = [m.reference.collection("setup").document("workflow_params") for m in mandates]
    read = {s.reference.path: s for s in db.get_all(parents + workflows)}
    erps = _children_by_mandate(user_id, "erp")
    contexts = _children_by_mandate(user_id, "context")
    return [
        _assemble(m, read.get(p.path), read.get(w.path), erps.get(m.reference.path, []), contexts.get(m.reference.path, []))
        for m, p, w in zip(mandates, parents, workflows)
    ]


@FIREBASE_MANAGEMENT.method(writes=False)
def fetch_single_mandate(mandate_path: UserPath) -> dict[str, Any]:
    """One mandate in the ``fetch_all_mandates`` shape. NOT_FOUND when it is missing or inactive."""
    db = get_firestore()
    ref = db.document(require_mandate_path("mandate_path", mandate_path))
    mandate = ref.get()
    if not mandate.exists or not (mandate.to_dict() or {}).get("isactive", True):
        raise NotFound("no active mandate at this path")
    parent_ref, workflow_ref = ref.parent.parent, ref.collection("setup").document("workflow_params")
    read = {s.reference.path: s for s in db.get_all([parent_ref, workflow_ref])}
    return _assemble(mandate, read.get(parent_ref.path), read.get(workflow_ref.path),
                     list(ref.collection("erp").stream()), list(ref.collection("context").stream()))


@FIREBASE_MANAGEMENT.method(writes=False)
def fetch_all_mandates_summary(user_id: UserId) -> dict[str, dict[str, str]]:
    """{legal_name: {contact_space, mandate_path, client_name}} for every mandate (2 round trips)."""
    mandates = _owned_mandates(user_id)
    parents = {s.reference.path: s.to_dict() or {} for s in get_firestore().get_all(
        [m.reference.parent.parent for m in mandates]) if s.exists}
    summary = {}
    for mandate in mandates:
        data = mandate.to_dict() or {}
        parent = parents.get(mandate.reference.parent.parent.path, {})
        summary[data.get("legal_name", "Unknown Company")] = {
            "contact_space": data.get("contact_space_name", "Unknown Contact Space"),
            "mandate_path": mandate.reference.path,
            "client_name": parent.get("client_name", "Unknown Client"),
        }
    return summary


@FIREBASE_MANAGEMENT.method(writes=False)
def get_erp_path(mandate_path: UserPath, erp_name: ShortText) -> dict[str, Any]:
    """The ``erp`` document of the mandate whose ``erp_type`` is ``erp_name``, with its ``id``. NOT_FOUND (was None)."""
    erp = get_firestore().document(require_mandate_path("mandate_path", mandate_path)).collection("erp")
    matches = erp.where(filter=firestore.FieldFilter("erp_type", "==", erp_name)).limit(1).get()
    if not matches:
        raise NotFound(f"no {erp_name!r} ERP for this mandate")
    return {**(matches[0].to_dict() or {}), "id": matches[0].id}


@FIREBASE_MANAGEMENT.method(writes=False)
def get_onboarding_temp_mandate(path: UserPath) -> str:
    """``base_info.business_name`` (else ``company_name``) of an onboarding document. NOT_FOUND (was None)."""
    snapshot = get_firestore().document(require_document_path("path", path)).get()
    base_info = (snapshot.to_dict() or {}).get("base_info") or {} if snapshot.exists else {}
    name = base_info.get("business_name") or base_info.get("company_name")
    if not name:
        raise NotFound("no onboarding company name at this path")
    return name


@FIREBASE_MANAGEMENT.method(writes=True)
def set_firebase_function_table(path: UserPath) -> bool:
    """Write the default function table to ``{path}/setup/function_table`` (merging into an existing one). ``path`` is
    a mandate path (the allow-list of rule 4: nothing is written below server-owned documents such as billing/)."""
    doc = get_firestore().document(f"{require_mandate_path('path', path)}/setup/function_table")
    doc.set(reference_defaults()["function_table"], merge=True)
    return True


# Reads, but creates the default function table on first use as the original did (idempotent, so no key needed).
@FIREBASE_MANAGEMENT.method(writes=False)
def get_departments_list(path: UserPath) -> list[str]:
    """Sorted department names ("Invoices", "Banks_cash", …) of ``{path}/setup/function_table``. As before, a
    missing table is created with the defaults first (``create`` never overwrites a concurrent first write). ``path``
    is a mandate path, as for set_firebase_function_table."""
    doc = get_firestore().document(f"{require_mandate_path('path', path)}/setup/function_table")
    snapshot = doc.get()
    table = snapshot.to_dict() if snapshot.exists else None
    if table is None:
        table = reference_defaults()["function_table"]
        try:
            doc.create(table)
        except AlreadyExists:  # a concurrent first read created it; the stored table wins
            table = doc.get().to_dict() or {}
    return sorted(name.lower().capitalize() for name in table)


# --- deletion ---------------------------------------------------------------------------------------------------------
CLIENT_HAS_MANDATES = "This client has mandates. Please delete the associated mandate(s) first before deleting the client."


def _client_named(uid: str, client_name: str) -> firestore.DocumentReference:
    clients = get_firestore().collection(client_path(uid, "bo_clients"))
    matches = clients.where(filter=firestore.FieldFilter("client_name", "==", client_name)).limit(1).get()
    if not matches:
        raise NotFound(f"no client named {client_name!r}")
    return matches[0].reference


@FIREBASE_MANAGEMENT.method(writes=True)
def delete_client_mandate(user_id: UserId, client_name: ShortText, business_name: ShortText) -> bool:
    """Delete the mandate whose ``contact_space_name`` is ``business_name`` of the client ``client_name``, with
    every document below it (context, erp, setup, billing, working_doc, banking_batches…), in batches of 500 and
    the mandate document last, so a retry after a failure finishes the job. NOT_FOUND when the client or the
    mandate is unknown (was False)."""
    mandates = _client_named(user_id, client_name).collection("mandates")
    matches = mandates.where(filter=firestore.FieldFilter("contact_space_name", "==", business_name)).limit(1).get()
    if not matches:
        raise NotFound(f"client {client_name!r} has no mandate named {business_name!r}")
    mandate = matches[0].reference
    delete_documents([*descendants(mandate), mandate])
    forget_user_spaces(user_id)  # its space stops being the user's at once, not when the cache expires
    return True


@FIREBASE_MANAGEMENT.method(writes=True)
def delete_client_if_no_mandates(user_id: UserId, client_name: ShortText) -> tuple[bool, str]:
    """Delete the client ``client_name`` (its ``bo_clients`` document and everything below it) only when it has no
    mandate: [true, "Client deleted successfully."], else [false, <reason>] and nothing is deleted. The check and
    the deletion are one transaction (up to 499 documents below the client; any beyond go first, in batches), so a
    mandate created meanwhile is never orphaned. NOT_FOUND when there is no such client (was [false, message])."""
    client = _client_named(user_id, client_name)
    mandates = client.collection("mandates").limit(1)
    if mandates.get():
        return False, CLIENT_HAS_MANDATES
    below = descendants(client)
    split = max(0, len(below) - (MAX_BATCH_WRITES - 1))
    delete_documents(below[:split])
    db = get_firestore()

    @firestore.transactional
    def remove(transaction: firestore.Transaction) -> bool:
        if list(transaction.get(mandates)):
            return False
        for ref in below[split:]:
            transaction.delete(ref)
        transaction.delete(client)
        return True

    if not remove(db.transaction()):
        return False, CLIENT_HAS_MANDATES
    return True, "Client deleted successfully."
