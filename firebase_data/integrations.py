"""Telegram users and scheduler jobs (§2.7).

``telegram_users/{username}`` is a root collection shared by all tenants: {telegram_username, is_active,
telegram_chat_id, last_activity, created_at, updated_at, authorized_mandates: {mandate_path: {firebase_user_id,
mandate_path, added_at, …}}}. A caller only ever sees or changes the entries of its own mandates.
``scheduler/{mandate_path with '/'→'_'}_{job_type}`` holds one scheduled job per mandate and type.
"""
from __future__ import annotations

from typing import Annotated, Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1 import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from core.integrations.firebase import get_firestore
from core.errors import NotFound, PermissionDenied
from rpc.types import Identifier, OwnDocId, Public, UserId, UserPath, path_owner

from .mandates import require_mandate_path
from .namespaces import FIREBASE_MANAGEMENT
from .store import utc_now
from .types import Payload

TelegramUsername = Annotated[
    str, Identifier(64), Public("a Telegram handle shared by tenants: only the caller's own mandate entries in it are used")
]
JobType = Annotated[str, Identifier(64), Public("a job kind; the job is keyed by the scoped mandate_path")]


def _telegram(username: str) -> firestore.DocumentReference:
    return get_firestore().collection("telegram_users").document(username)


def _own_view(data: dict[str, Any], uid: str, username: str) -> dict[str, Any]:
    """The user document with only this tenant's authorized mandates (other tenants' paths stay private)."""
    mandates = {path: m for path, m in (data.get("authorized_mandates") or {}).items()
                if (m or {}).get("firebase_user_id") == uid}
    return {**data, "authorized_mandates": mandates, "doc_id": username}


@FIREBASE_MANAGEMENT.method(writes=True)
def create_telegram_user(
    user_id: UserId, mandate_path: UserPath, telegram_username: TelegramUsername, additional_data: Payload | None = None
) -> bool:
    """Authorize a Telegram user on one of the caller's mandates (creating the user when new), in a transaction.
    False when it was already authorized there (nothing changed), as before."""
    path = require_mandate_path("mandate_path", mandate_path)
    db = get_firestore()
    ref = _telegram(telegram_username)
    # The caller's fields first, the server's last: the entry always names its real owner and mandate.
    entry = {**(additional_data or {}), "firebase_user_id": user_id, "mandate_path": path, "added_at": utc_now()}

    @firestore.transactional
    def authorize(transaction: firestore.Transaction) -> bool:
        snapshot = ref.get(transaction=transaction)
        if not snapshot.exists:
            transaction.set(ref, {
                "telegram_username": telegram_username, "created_at": utc_now(), "updated_at": utc_now(),
                "is_active": True, "last_activity": None, "telegram_chat_id": None, "authorized_mandates": {path: entry},
            })
            return True
        if path in ((snapshot.to_dict() or {}).get("authorized_mandates") or {}):
            return False
        transaction.update(ref, {FieldPath("authorized_mandates", path).to_api_repr(): entry, "updated_at": utc_now()})
        return True

    return authorize(db.transaction())


@FIREBASE_MANAGEMENT.method(writes=False)
def get_telegram_users(user_id: UserId, mandate_path: UserPath | None = None) -> list[dict[str, Any]]:
    """Active Telegram users authorized on the caller's mandates (or on one mandate), each with ``doc_id``.
    With a mandate it is one indexed query; without, every active user is read and filtered, as before."""
    query = get_firestore().collection("telegram_users").where(filter=FieldFilter("is_active", "==", True))
    if mandate_path is not None:
        path = require_mandate_path("mandate_path", mandate_path)
        field = FieldPath("authorized_mandates", path, "firebase_user_id").to_api_repr()
        query = query.where(filter=FieldFilter(field, "==", user_id))
    users = []
    for snapshot in query.stream():
        view = _own_view(snapshot.to_dict() or {}, user_id, snapshot.id)
        if view["authorized_mandates"]:
            users.append(view)
    return users


@FIREBASE_MANAGEMENT.method(writes=True)
def delete_telegram_user(telegram_username: TelegramUsername, mandate_path: UserPath) -> bool:
    """Remove the authorization on one mandate (the user document goes when none is left) and the username from
    the mandate's ``telegram_auth_users`` / ``telegram_users_mapping``, in one transaction. NOT_FOUND when it was
    not authorized there (was False)."""
    path = require_mandate_path("mandate_path", mandate_path)
    db = get_firestore()
    ref, mandate_ref = _telegram(telegram_username), db.document(path)

    @firestore.transactional
    def revoke(transaction: firestore.Transaction) -> None:
        user, mandate = ref.get(transaction=transaction), mandate_ref.get(transaction=transaction)
        mandates = dict((user.to_dict() or {}).get("authorized_mandates") or {}) if user.exists else {}
        if path not in mandates:
            raise NotFound("this Telegram user is not authorized on this mandate")
        del mandates[path]
        if mandates:
            transaction.update(ref, {FieldPath("authorized_mandates", path).to_api_repr(): firestore.DELETE_FIELD,
                                     "updated_at": utc_now()})
        else:
            transaction.delete(ref)
        if mandate.exists:
            data = mandate.to_dict() or {}
            changes: dict[str, Any] = {}
            if telegram_username in (data.get("telegram_auth_users") or []):
                changes["telegram_auth_users"] = firestore.ArrayRemove([telegram_username])
            if telegram_username in (data.get("telegram_users_mapping") or {}):
                changes[FieldPath("telegram_users_mapping", telegram_username).to_api_repr()] = firestore.DELETE_FIELD
            if changes:
                transaction.update(mandate_ref, changes)

    revoke(db.transaction())
    return True


@FIREBASE_MANAGEMENT.method(writes=False)
def is_telegram_user_authorized(telegram_username: TelegramUsername, mandate_path: UserPath) -> bool:
    """Whether this active Telegram user is authorized on one of the caller's mandates."""
    snapshot = _telegram(telegram_username).get()
    data = (snapshot.to_dict() or {}) if snapshot.exists else {}
    return bool(data.get("is_active")) and require_mandate_path("mandate_path", mandate_path) in (
        data.get("authorized_mandates") or {})


# --- scheduler ------------------------------------------------------------------------------------------------------
def scheduler_job_id(mandate_path: str, job_type: str) -> str:
    return f"{mandate_path.replace('/', '_')}_{job_type}"


@FIREBASE_MANAGEMENT.method(writes=True)
def save_scheduler_job(mandate_path: UserPath, job_type: JobType, job_data: Payload) -> bool:
    """Replace ``scheduler/{mandate_path_}_{job_type}`` with the job, enabled, server timestamps. ``mandate_path``
    and ``user_id`` are written last, from the scoped argument: the scheduler runs the job for them, whatever
    ``job_data`` says."""
    path = require_mandate_path("mandate_path", mandate_path)
    job_id = scheduler_job_id(path, job_type)
    get_firestore().collection("scheduler").document(job_id).set({
        **job_data, "mandate_path": path, "user_id": path_owner(path), "created_at": firestore.SERVER_TIMESTAMP,
        "updated_at": firestore.SERVER_TIMESTAMP, "enabled": True,
    })
    return True


@FIREBASE_MANAGEMENT.method(writes=True)
def disable_scheduler_job(mandate_path: UserPath, job_type: JobType) -> bool:
    """Set ``enabled: false`` (with ``disabled_at``). NOT_FOUND when there is no such job (was False)."""
    job_id = scheduler_job_id(require_mandate_path("mandate_path", mandate_path), job_type)
    try:
        get_firestore().collection("scheduler").document(job_id).update({
            "enabled": False, "updated_at": firestore.SERVER_TIMESTAMP, "disabled_at": firestore.SERVER_TIMESTAMP,
        })
    except gexc.NotFound:
        raise NotFound("no scheduler job of this type for this mandate") from None
    return True


@FIREBASE_MANAGEMENT.method(writes=True)
def delete_scheduler_job_completely(job_id: OwnDocId, user_id: UserId) -> bool:
    """Delete ``scheduler/{job_id}``; True also when it was already gone (as before). ``user_id`` is new (second):
    the job must be one of the caller's mandates': its stored ``mandate_path`` (written by save_scheduler_job), or for
    jobs saved before that field, the ``clients_{uid}_bo_clients_`` prefix of its id."""
    ref = get_firestore().collection("scheduler").document(job_id)
    snapshot = ref.get()
    stored = (snapshot.to_dict() or {}).get("mandate_path") if snapshot.exists else None
    # The prefix alone is ambiguous (uid "a" is a prefix of "clients_a_bo_clients_x_bo_clients_…"): the stored owner
    # decides when there is one.
    owner = path_owner(stored) if isinstance(stored, str) else None
    allowed = owner == user_id if owner is not None else job_id.startswith(f"clients_{user_id}_bo_clients_")
    if not allowed:
        raise PermissionDenied("job_id must belong to one of the caller's mandates")
    ref.delete()
    return True
