"""Mandate context documents: ``…/mandates/{m}/context/{general_context,accounting_context,coa_context}`` (§2.5).

Every method addresses the mandate as the original did, by ``client_uuid`` (a ``bo_clients`` document) and
``contact_space_id`` (a mandate of that client): two indexed queries, NOT_FOUND when either is unknown.
Fixed from the original: ``download_accounting_context`` and ``upload_general_context_init_topics_q_a`` read/wrote
the legacy root ``bo_clients`` tree; the download methods no longer rewrite documents while reading them.
"""
from __future__ import annotations

from typing import Annotated, Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1 import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from core.integrations.firebase import get_firestore
from core.errors import InvalidArgs, NotFound
from rpc.types import Bounded, Identifier, OwnDocId, Public, UserId, UserPath

from .namespaces import FIREBASE_MANAGEMENT
from .store import client_path, require_document_path, utc_now
from .types import LongText, Payload

TargetIndex = Annotated[int, Bounded(0, 10_000)] | Annotated[str, Identifier(16), Public("a position in the topic list")]
FieldName = Annotated[str, Identifier(128), Public("a field name inside the scoped document")]


def _mandate(uid: str, client_uuid: str, contact_space_id: str) -> firestore.DocumentReference:
    clients = get_firestore().collection(client_path(uid, "bo_clients"))
    found = clients.where(filter=FieldFilter("client_uuid", "==", client_uuid)).limit(1).get()
    if not found:
        raise NotFound("no client with this client_uuid")
    mandates = found[0].reference.collection("mandates")
    matches = mandates.where(filter=FieldFilter("contact_space_id", "==", contact_space_id)).limit(1).get()
    if not matches:
        raise NotFound("no mandate with this contact_space_id for this client")
    return matches[0].reference


def _context(uid: str, client_uuid: str, contact_space_id: str, name: str) -> firestore.DocumentReference:
    return _mandate(uid, client_uuid, contact_space_id).collection("context").document(name)


def _data(ref: firestore.DocumentReference) -> dict[str, Any] | None:
    snapshot = ref.get()
    return (snapshot.to_dict() or {}) if snapshot.exists else None


# --- general context ---------------------------------------------------------------------------------------------
@FIREBASE_MANAGEMENT.method(writes=False)
def download_general_context_review(
    user_id: UserId, client_uuid: OwnDocId, contact_space_id: OwnDocId, target_index: TargetIndex
) -> Any:
    """``context_topic_q_a[target_index].review_motivation`` of the general context (None when unset)."""
    data = _data(_context(user_id, client_uuid, contact_space_id, "general_context")) or {}
    return ((data.get("context_topic_q_a") or {}).get(str(target_index)) or {}).get("review_motivation")


@FIREBASE_MANAGEMENT.method(writes=True)
def upload_company_profile_report(user_id: UserId, client_uuid: OwnDocId, contact_space_id: OwnDocId, report: LongText | Payload) -> bool:
    """Set ``context_company_profile_report`` of the general context."""
    _context(user_id, client_uuid, contact_space_id, "general_context").set(
        {"context_company_profile_report": report}, merge=True)
    return True


@FIREBASE_MANAGEMENT.method(writes=True)
def upload_general_context_on_targets(
    user_id: UserId, client_uuid: OwnDocId, contact_space_id: OwnDocId, target_index: TargetIndex, field: FieldName, value: Any
) -> bool:
    """Set ``context_topic_q_a.{target_index}.{field}``. NOT_FOUND when the general context does not exist."""
    ref = _context(user_id, client_uuid, contact_space_id, "general_context")
    try:
        ref.update({FieldPath("context_topic_q_a", str(target_index), field).to_api_repr(): value})
    except gexc.NotFound:
        raise NotFound("this mandate has no general context yet") from None
    return True


@FIREBASE_MANAGEMENT.method(writes=False)
def download_general_context_ai_summary(user_id: UserId, client_uuid: OwnDocId, contact_space_id: OwnDocId) -> Any:
    """The company profile report; for documents of the oldest layout, their ``content``; {} when none."""
    data = _data(_context(user_id, client_uuid, contact_space_id, "general_context"))
    if data is None:
        return {}
    if "context_company_profile_report" in data:
        return data["context_company_profile_report"]
    return data.get("content", "")


@FIREBASE_MANAGEMENT.method(writes=False)
def download_general_context_init(user_id: UserId, client_uuid: OwnDocId, contact_space_id: OwnDocId) -> dict[str, Any]:
    """``context_topic_q_a`` of the general context ({} when none)."""
    return (_data(_context(user_id, client_uuid, contact_space_id, "general_context")) or {}).get("context_topic_q_a", {})


@FIREBASE_MANAGEMENT.method(writes=True)
def upload_general_context_init(user_id: UserId, client_uuid: OwnDocId, contact_space_id: OwnDocId, general_context_data: Any) -> bool:
    """Replace the general context with {content: general_context_data} (as before)."""
    _context(user_id, client_uuid, contact_space_id, "general_context").set({"content": general_context_data})
    return True


@FIREBASE_MANAGEMENT.method(writes=True)
def upload_general_context_init_topics_q_a(
    user_id: UserId, client_uuid: OwnDocId, contact_space_id: OwnDocId, get_q_and_a_topics: Payload
) -> bool:
    """Set ``context_topic_q_a`` to {key: {target, questions, tips, is_done: false}} (empty strings dropped)."""
    topics = {}
    for key, topic in get_q_and_a_topics.items():
        if not isinstance(topic, dict) or "target" not in topic:
            raise InvalidArgs(f"topic {key!r} needs a target, questions and tips")
        topics[str(key)] = {
            "target": topic["target"],
            "questions": [q for q in topic.get("questions", []) if isinstance(q, str) and q],
            "tips": [t for t in topic.get("tips", []) if isinstance(t, str) and t],
            "is_done": False,
        }
    _context(user_id, client_uuid, contact_space_id, "general_context").set({"context_topic_q_a": topics}, merge=True)
    return True


@FIREBASE_MANAGEMENT.method(writes=True)
def upload_general_context_init_chat_with_user(
    user_id: UserId, client_uuid: OwnDocId, contact_space_id: OwnDocId, chat_history: LongText, current_target_index: TargetIndex
) -> bool:
    """Append ``chat_history`` to ``context_topic_q_a.{index}.chat`` (ArrayUnion: no read-modify-write race)."""
    ref = _context(user_id, client_uuid, contact_space_id, "general_context")
    ref.set({"context_topic_q_a": {str(current_target_index): {"chat": firestore.ArrayUnion([chat_history])}}}, merge=True)
    return True


@FIREBASE_MANAGEMENT.method(writes=False)
def download_general_context_chat_with_user(
    user_id: UserId, client_uuid: OwnDocId, mandat_space_id: OwnDocId, current_target_index: TargetIndex
) -> list[Any]:
    """Every chat line of the topics 0..current_target_index, in topic order."""
    topics = (_data(_context(user_id, client_uuid, mandat_space_id, "general_context")) or {}).get("context_topic_q_a", {})
    chats: list[Any] = []
    for index in range(int(current_target_index) + 1):
        chats.extend((topics.get(str(index)) or {}).get("chat", []))
    return chats


# --- accounting and chart-of-accounts context ----------------------------------------------------------------------
@FIREBASE_MANAGEMENT.method(writes=False)
def download_accounting_context(user_id: UserId, client_uuid: OwnDocId, contact_space_id: OwnDocId) -> Any:
    """``data`` of the COA context. NOT_FOUND when there is none (was None)."""
    data = _data(_context(user_id, client_uuid, contact_space_id, "coa_context"))
    if data is None or "data" not in data:
        raise NotFound("this mandate has no chart-of-accounts context")
    return data["data"]


@FIREBASE_MANAGEMENT.method(writes=True)
def upload_coa_context(
    user_id: UserId, client_uuid: OwnDocId, contact_space_id: OwnDocId, accounting_data: Payload, kill: bool = False
) -> bool:
    """Create the COA context, replace it (``kill``), or update the account_number/account_name/account_id/
    functions of each given account — one write in every case (the original wrote once per account)."""
    ref = _context(user_id, client_uuid, contact_space_id, "coa_context")
    db = get_firestore()

    @firestore.transactional
    def write(transaction: firestore.Transaction) -> None:
        if kill or not ref.get(transaction=transaction).exists:
            transaction.set(ref, {"data": accounting_data})
            return
        changes = {}
        for group, accounts in accounting_data.items():
            for account, details in (accounts or {}).items():
                for field in ("account_number", "account_name", "account_id", "functions"):
                    if field in (details or {}):
                        changes[FieldPath("data", group, account, field).to_api_repr()] = details[field]
        if changes:
            transaction.update(ref, changes)

    write(db.transaction())
    return True


@FIREBASE_MANAGEMENT.method(writes=False)
def download_accounting_context_init(user_id: UserId, client_uuid: OwnDocId, contact_space_id: OwnDocId) -> Any:
    """``data.accounting_context_0`` (or ``data`` of the older layout). NOT_FOUND when there is none (was False)."""
    data = _data(_context(user_id, client_uuid, contact_space_id, "accounting_context"))
    if data is None:
        raise NotFound("this mandate has no accounting context")
    inner = data.get("data", {})
    return inner.get("accounting_context_0", inner) if isinstance(inner, dict) else inner


@FIREBASE_MANAGEMENT.method(writes=False)
def get_last_refresh_accounting_context(user_id: UserId, client_uuid: OwnDocId, contact_space_id: OwnDocId) -> Any:
    """``data.last_refresh`` of the accounting context. NOT_FOUND when absent (the original raised ValueError)."""
    data = _data(_context(user_id, client_uuid, contact_space_id, "accounting_context")) or {}
    last_refresh = (data.get("data") or {}).get("last_refresh")
    if last_refresh is None:
        raise NotFound("the accounting context has no last_refresh")
    return last_refresh


@FIREBASE_MANAGEMENT.method(writes=True)
def upload_accounting_context_init(
    user_id: UserId, client_uuid: OwnDocId, contact_space_id: OwnDocId, general_context_data: Any
) -> str:
    """Replace the accounting context with {data: {accounting_context_0, last_refresh}}; ``last_refresh`` stays
    the ISO text readers already parse."""
    ref = _context(user_id, client_uuid, contact_space_id, "accounting_context")
    last_refresh = utc_now().replace(tzinfo=None).isoformat()  # the original's naive-UTC text format
    ref.set({"data": {"accounting_context_0": general_context_data, "last_refresh": last_refresh}})
    return "Contexte général et timestamp mis à jour avec succès."


@FIREBASE_MANAGEMENT.method(writes=False)
def reconstruct_full_client_profile(user_id: UserId, client_uuid: OwnDocId, contact_space_id: OwnDocId) -> dict[str, Any]:
    """The client's fields, the mandate's fields prefixed ``mandate_`` and the ERP fields prefixed ``erp_``
    (a repeated ERP field gets ``_1``, ``_2``… as before)."""
    mandate_ref = _mandate(user_id, client_uuid, contact_space_id)
    read = {s.reference.path: s.to_dict() or {} for s in get_firestore().get_all([mandate_ref.parent.parent, mandate_ref])}
    profile = dict(read.get(mandate_ref.parent.parent.path, {}))
    profile.update({f"mandate_{key}": value for key, value in read.get(mandate_ref.path, {}).items()})
    for erp in mandate_ref.collection("erp").stream():
        for key, value in (erp.to_dict() or {}).items():
            name, suffix = f"erp_{key}", 1
            while name in profile:
                name, suffix = f"erp_{key}_{suffix}", suffix + 1
            profile[name] = value
    return profile


@FIREBASE_MANAGEMENT.method(writes=True)
def save_context(context_path: UserPath, context_data: Payload) -> bool:
    """Merge ``context_data`` into a context document of one of the caller's mandates."""
    path = require_document_path("context_path", context_path)
    segments = path.split("/")
    if len(segments) != 8 or segments[2] != "bo_clients" or segments[4] != "mandates" or segments[6] != "context":
        raise InvalidArgs("context_path must be clients/{uid}/bo_clients/{c}/mandates/{m}/context/{name}")
    get_firestore().document(path).set(context_data, merge=True)
    return True


@FIREBASE_MANAGEMENT.method(writes=False)
def get_folder_ids_from_fetched_details(fetched_details: Payload) -> tuple[Any, ...]:
    """The 22 values the Reflex app unpacks from a ``reconstruct_full_client_profile`` result (pure), in the
    original's order: input_drive_doc_id, output_drive_doc_id, mandat_space_id, mandat_space_name, client_name,
    legal_name, uuid_id, gl_sheet_id, root_folder_id, doc_folder_id, odoo_erp_type, odoo_url, odoo_username,
    odoo_secret_manager, odoo_db, mandate_drive_space_parent_id, odoo_company_name, mandat_base_currency,
    gl_accounting_erp, ar_erp, ap_erp, bank_erp."""
    get = fetched_details.get
    return (
        get("mandate_input_drive_doc_id", ""), get("mandate_output_drive_doc_id", ""),
        get("mandate_contact_space_id", ""), get("mandate_contact_space_name", ""), get("client_name", ""),
        get("mandate_legal_name", get("client_name", "")), get("client_uuid", ""), get("gl_sheet_id", ""),
        get("mandate_drive_client_parent_id", ""), get("mandate_main_doc_drive_id", ""), get("erp_erp_type", ""),
        get("odoo_url", get("erp_odoo_url", "")), get("odoo_username", get("erp_odoo_username", "")),
        get("erp_secret_manager", ""), get("odoo_db", get("erp_odoo_db", "")), get("mandate_drive_space_parent_id"),
        get("odoo_company_name", get("erp_odoo_company_name", "")), get("mandate_base_currency", ""),
        get("mandate_gl_accounting_erp", ""), get("mandate_ar_erp", ""), get("mandate_ap_erp", ""),
        get("mandate_bank_erp", ""),
    )
