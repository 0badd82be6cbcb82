"""Users, beta requests, client documents and customer lists (§2.5).

Layout: ``users/{uid}`` (uid, email, displayName, photoURL, share_settings…), ``clients/{uid}`` (client_email,
client_name, created_at), ``clients/{uid}/bo_clients/{client}`` (client_name, client_uuid…) → ``mandates/{m}``,
``beta_request/{email}``, ``invitations/*``. Emails are never logged.
"""
from __future__ import annotations

import uuid
from typing import Annotated, Any

from google.cloud import firestore
from google.cloud.firestore_v1 import FieldFilter

from core.integrations.firebase import get_firestore
from core.errors import InvalidArgs, NotFound, PermissionDenied
from core.tenancy import shared_company_ids, subtree_range
from rpc.types import InUserTree, MaxLen, OwnDocId, UserId

from .namespaces import FIREBASE_MANAGEMENT
from .store import MAX_IN_VALUES, chunks, client_path, with_id
from .types import Limit, Payload, ShortText

Email = Annotated[str, MaxLen(320)]
# What a user may change in their own ``users/{uid}`` on a later login (README, "Security", rule 4): the profile the
# sign-in provider gives. Everything else there is server-decided; ``share_settings`` above all, since it grants
# other companies' spaces (core/tenancy.py).
PROFILE_FIELDS = frozenset({
    "uid", "email", "displayName", "photoURL", "photoUrl", "phoneNumber", "emailVerified", "providerId",
    "language", "locale", "timezone", "lastLoginAt", "last_login",
})
# The acting user's own profile: its uid is checked against user_id, its fields against PROFILE_FIELDS.
ProfileData = Annotated[Payload, InUserTree()]
# Decided by staff when a beta request is reviewed, never by the requester.
BETA_SERVER_FIELDS = frozenset({"authorized_access", "created_at", "updated_at"})


def _bo_clients(uid: str) -> firestore.CollectionReference:
    return get_firestore().collection(client_path(uid, "bo_clients"))


# --- users and onboarding ------------------------------------------------------------------------------------------
@FIREBASE_MANAGEMENT.method(writes=True)
def check_and_create_client_document(user_data: ProfileData, user_id: UserId) -> bool:
    """First login creates ``users/{uid}``, ``clients/{uid}`` and ``clients/{uid}/bo_clients/{uid}`` in one
    transaction; later logins update ``users/{uid}`` with ``user_data``. Returns True when the documents were created.

    ``user_id`` is new (second): ``user_data.uid`` must be the caller, which the method can only check against it.
    Only profile fields (``PROFILE_FIELDS``) are accepted; any other field is PERMISSION_DENIED and nothing is written."""
    if user_data.get("uid") != user_id:
        raise PermissionDenied("user_data.uid must be the envelope user_id")
    refused = sorted(set(user_data) - PROFILE_FIELDS)
    if refused:
        raise PermissionDenied(f"user_data may only hold profile fields; not {', '.join(map(repr, refused[:5]))}")
    if not isinstance(user_data.get("email"), str):
        raise InvalidArgs("user_data.email is required")
    db = get_firestore()
    user_ref = db.collection("users").document(user_id)
    client_ref = db.collection("clients").document(user_id)

    @firestore.transactional
    def create_or_update(transaction: firestore.Transaction) -> bool:
        if user_ref.get(transaction=transaction).exists:
            transaction.update(user_ref, user_data)
            return False
        display_name = user_data.get("displayName", "")
        transaction.set(user_ref, {"uid": user_id, "email": user_data["email"], "displayName": display_name,
                                   "photoURL": user_data.get("photoUrl", "")})
        transaction.set(client_ref, {"client_email": user_data["email"], "client_name": display_name,
                                     "created_at": firestore.SERVER_TIMESTAMP})
        transaction.set(client_ref.collection("bo_clients").document(user_id), {
            "client_name": display_name, "created_at": firestore.SERVER_TIMESTAMP,
            "client_uuid": f"client_{uuid.uuid4().hex[:8]}",
        })
        return True

    return create_or_update(db.transaction())


@FIREBASE_MANAGEMENT.method(writes=False)
def check_if_usermail_already_exists(email_adresse: Email) -> bool:
    """Whether a client already uses this email (a yes/no answer only, nothing about that client)."""
    query = get_firestore().collection("clients").where(filter=FieldFilter("client_email", "==", email_adresse))
    return bool(query.limit(1).get())


@FIREBASE_MANAGEMENT.method(writes=False)
def get_beta_request_by_email(email: Email) -> dict[str, Any]:
    """The beta request of this email, with its ``id``. NOT_FOUND when there is none (was None)."""
    matches = get_firestore().collection("beta_request").where(filter=FieldFilter("email", "==", email)).limit(1).get()
    if not matches:
        raise NotFound("no beta request for this email")
    return with_id(matches[0])


@FIREBASE_MANAGEMENT.method(writes=True)
def create_or_update_beta_request(payload: Payload) -> bool:
    """Create or merge ``beta_request/{email}``; ``authorized_access`` defaults to False on creation only, and is
    staff's to change: a payload carrying it (or the timestamps) is PERMISSION_DENIED."""
    if BETA_SERVER_FIELDS & payload.keys():
        raise PermissionDenied(f"payload must not set {sorted(BETA_SERVER_FIELDS & payload.keys())}")
    email = payload.get("email")
    if not isinstance(email, str) or not email or "/" in email or len(email) > 320:
        raise InvalidArgs("payload.email is required")
    db = get_firestore()
    ref = db.collection("beta_request").document(email)

    @firestore.transactional
    def upsert(transaction: firestore.Transaction) -> None:
        fields = {**payload, "updated_at": firestore.SERVER_TIMESTAMP}
        if not ref.get(transaction=transaction).exists:
            fields.setdefault("authorized_access", False)
            fields["created_at"] = firestore.SERVER_TIMESTAMP
        transaction.set(ref, fields, merge=True)

    upsert(db.transaction())
    return True


@FIREBASE_MANAGEMENT.method(writes=False)
def get_invitations_by_inviter(invited_by: UserId, limit: Limit = 200) -> list[dict[str, Any]]:
    """Invitations the caller sent, each with its ``id``."""
    query = get_firestore().collection("invitations").where(filter=FieldFilter("invited_by", "==", invited_by))
    return [with_id(s) for s in query.limit(limit).stream()]


# --- client documents and customers --------------------------------------------------------------------------------
@FIREBASE_MANAGEMENT.method(writes=False)
def get_client_data_by_name(user_id: UserId, client_name: ShortText) -> tuple[str | None, str | None, str]:
    """[client_uuid, drive_client_parent_id, document_path] of the client with this name. NOT_FOUND (was Nones)."""
    matches = _bo_clients(user_id).where(filter=FieldFilter("client_name", "==", client_name)).limit(1).get()
    if not matches:
        raise NotFound(f"no client named {client_name!r}")
    data = matches[0].to_dict() or {}
    return data.get("client_uuid"), data.get("drive_client_parent_id"), matches[0].reference.path


def _client_by_uuid(uid: str, client_uuid: str) -> firestore.DocumentSnapshot | None:
    matches = _bo_clients(uid).where(filter=FieldFilter("client_uuid", "==", client_uuid)).limit(1).get()
    return matches[0] if matches else None


@FIREBASE_MANAGEMENT.method(writes=False)
def check_business_name_existence(user_id: UserId, client_uuid: OwnDocId, business_name: ShortText) -> bool:
    """Whether the client already has a mandate whose ``contact_space_name`` is ``business_name``."""
    client = _client_by_uuid(user_id, client_uuid)
    if client is None:
        return False
    mandates = client.reference.collection("mandates")
    return bool(mandates.where(filter=FieldFilter("contact_space_name", "==", business_name)).limit(1).get())


@FIREBASE_MANAGEMENT.method(writes=False)
def get_client_name_by_business_name(user_id: UserId, business_name: ShortText) -> tuple[str | None, str]:
    """[client_name, client_document_path] of the client owning a mandate named ``business_name``: one
    collection-group query restricted to the caller's subtree. NOT_FOUND (was [None, None])."""
    query = subtree_range(get_firestore().collection_group("mandates"), user_id)
    for mandate in query.where(filter=FieldFilter("contact_space_name", "==", business_name)).limit(1).stream():
        client_ref = mandate.reference.parent.parent
        return (client_ref.get().to_dict() or {}).get("client_name"), client_ref.path
    raise NotFound(f"no mandate named {business_name!r}")


@FIREBASE_MANAGEMENT.method(writes=False)
def get_client_doc(user_id: UserId, uuid: OwnDocId) -> str:
    """Id of the ``bo_clients`` document whose ``client_uuid`` is ``uuid``. NOT_FOUND (was None)."""
    client = _client_by_uuid(user_id, uuid)
    if client is None:
        raise NotFound("no client with this uuid")
    return client.id


@FIREBASE_MANAGEMENT.method(writes=False)
def get_customer_list(user_id: UserId, shared_account: bool = False) -> list[str]:
    """Names of the caller's clients except the caller's own ``bo_clients/{uid}``; or the shared list."""
    if shared_account:
        return get_shared_customers_list(user_id)
    own = client_path(user_id, "bo_clients", user_id)
    return [s.get("client_name") for s in _bo_clients(user_id).stream() if s.reference.path != own]


@FIREBASE_MANAGEMENT.method(writes=False)
def get_shared_customers_list(user_id: UserId) -> list[str]:
    """Client names of the companies shared with the caller (``users/{uid}.share_settings``): a collection-group
    query per 30 companies and one batched read of the parents (the original scanned every tenant's mandates)."""
    db = get_firestore()
    user = db.document(f"users/{user_id}").get()
    company_ids = shared_company_ids(user.to_dict() or {}) if user.exists else []
    parents = {}
    for group in chunks(sorted(set(company_ids)), MAX_IN_VALUES):
        query = db.collection_group("mandates").where(filter=FieldFilter("contact_space_id", "in", group))
        for mandate in query.stream():
            parents[mandate.reference.parent.parent.path] = mandate.reference.parent.parent
    names = {(s.to_dict() or {}).get("client_name") for s in db.get_all(list(parents.values())) if s.exists}
    return sorted(name for name in names if name)
