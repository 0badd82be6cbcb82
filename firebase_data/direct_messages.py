"""Direct messages in the Realtime Database: ``clients/{uid}/direct_message_notif/{pushId}`` (layout of §3).

A message carries file_name, status, job_id, file_id, function_name, collection_id, additional_info, timestamp and
sender_id. The listeners worker turns changes here into ``msg.*`` events; these methods are the RPC side.
"""
from __future__ import annotations

from typing import Annotated, Any

from core.integrations.rtdb import reference
from rpc.types import InUserTree, MaxLen, UserId

from .chat import push_checked
from .namespaces import FIREBASE_REALTIME
from .store import iso_utc, utc_now
from .types import Limit, OwnRtdbKey, Payload, RecipientId


# Only narrows (and names) the acting user's own inbox: another company's id just matches nothing.
CompanyFilter = Annotated[list[dict], MaxLen(1000), InUserTree()]


def _inbox(uid: str):
    return reference(f"clients/{uid}/direct_message_notif")


@FIREBASE_REALTIME.method(writes=True)
def send_direct_message(user_id: UserId, recipient_id: RecipientId, message_data: Payload) -> bool:
    """Push a message into the recipient's inbox: the caller's own, or that of a user sharing one of the caller's
    companies (else PERMISSION_DENIED). ``sender_id`` is always the caller (the original kept a caller-supplied one,
    so anyone could impersonate anyone); ``timestamp`` is filled in when missing."""
    message = {"timestamp": iso_utc(utc_now()), **message_data, "sender_id": user_id}
    push_checked(_inbox(recipient_id), message)
    return True


@FIREBASE_REALTIME.method(writes=True)
def delete_direct_message(user_id: UserId, message_id: OwnRtdbKey) -> bool:
    """Delete one message of the caller's inbox; True also when it was already gone (as before)."""
    _inbox(user_id).child(message_id).delete()
    return True


@FIREBASE_REALTIME.method(writes=False)
def get_unread_direct_messages(
    user_id: UserId, companies: CompanyFilter | None = None, limit: Limit = 200
) -> list[dict[str, Any]]:
    """The caller's last ``limit`` messages, oldest first, each with ``doc_id`` and ``collection_name``.

    With ``companies`` ([{contact_space_id, name}, ...]) only messages whose ``collection_id`` is one of them are
    kept and named; without it every message is returned (the original returned nothing, a silent empty inbox).
    """
    messages = _inbox(user_id).order_by_key().limit_to_last(limit).get()
    if not messages:
        return []
    names: dict[str, str] | None = None
    if companies is not None:
        names = {c["contact_space_id"]: str(c.get("name", "")) for c in companies if c.get("contact_space_id")}
    items = []
    for message_id, message in messages.items():
        if not isinstance(message, dict):
            continue
        collection_id = message.get("collection_id", "")
        if names is not None and collection_id not in names:
            continue
        items.append({**message, "doc_id": message_id, "collection_name": (names or {}).get(collection_id, "")})
    return sorted(items, key=lambda item: str(item.get("timestamp", "")))
