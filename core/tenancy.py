"""What a user owns beyond ``clients/{uid}/``: their spaces (README, "Security", rule 2).

A space (a chat ``space_code``, a company) is a user's when it is the ``contact_space_id`` of one of their mandates
(``clients/{uid}/bo_clients/*/mandates/*``), or when its owner shared the company with them: ``users/{uid}
.share_settings``, which only the server writes (``firebase_data.accounts.PROFILE_FIELDS`` keeps it out of a user's
own profile updates).

One indexed query (a collection-group query on ``mandates`` restricted to the user's subtree, projected on
``contact_space_id``) plus one document read resolve them. The answer is cached in Redis for
``TENANT_SPACES_CACHE_SECONDS`` (default 4 s), so a new or removed mandate is honoured within 5 s by every process;
a mandate change made through this gateway forgets the cache at once.

This lives in ``core`` because the RPC registry (``rpc``), Chroma (``chroma``) and the /ws checks (``realtime``) all
need it and none of them may import ``firebase_data`` (tests/architecture/test_layers.py).
"""
from __future__ import annotations

import contextvars
import json
from typing import Any

from django.conf import settings
from google.cloud.firestore_v1 import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from core.errors import PermissionDenied
from core.integrations.firebase import get_firestore
from core.integrations.redis import get_redis

SPACES_KEY = "tenancy:spaces:{uid}"

# The envelope's user while a method runs (set by the RPC gateway), for methods whose contract takes no user argument
# (the CHROMA_VECTOR data methods). None outside a call.
acting_user_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("acting_user", default=None)


def subtree_range(query: Any, uid: str) -> Any:
    """Restrict a collection-group query to ``clients/{uid}/…`` with a document-name range (no cross-tenant scan).

    The upper bound ``clients/{uid}/\\uf8ff/\\uf8ff`` sorts after every document below ``clients/{uid}`` and before
    ``clients/{uid}0…``, because Firestore compares document names segment by segment.
    """
    db = get_firestore()
    low = db.document(f"clients/{uid}")
    high = db.document(f"clients/{uid}/\uf8ff/\uf8ff")
    return query.where(filter=FieldFilter(FieldPath.document_id(), ">=", low)).where(
        filter=FieldFilter(FieldPath.document_id(), "<", high)
    )


def shared_company_ids(user: dict[str, Any]) -> list[str]:
    """Companies shared with a user, from ``users/{uid}.share_settings`` (both layouts the Reflex app writes)."""
    settings_ = user.get("share_settings") or {}
    if not isinstance(settings_, dict):
        return []
    if isinstance(settings_.get("accounts"), dict):
        return [c for account in settings_["accounts"].values() if isinstance(account, dict)
                for c in (account.get("companies") or []) if isinstance(c, str)]
    company = settings_.get("company_id")
    return [company] if isinstance(company, str) and company else []


def _resolve_spaces(uid: str) -> set[str]:
    db = get_firestore()
    query = subtree_range(db.collection_group("mandates"), uid).select(["contact_space_id"])
    spaces = set()
    for mandate in query.stream():
        segments = mandate.reference.path.split("/")
        space = (mandate.to_dict() or {}).get("contact_space_id")
        # Only clients/{uid}/bo_clients/{c}/mandates/{m}: a "mandates" collection elsewhere in the tree is not one.
        if len(segments) == 6 and segments[2] == "bo_clients" and isinstance(space, str) and space:
            spaces.add(space)
    user = db.document(f"users/{uid}").get()
    if user.exists:
        spaces.update(shared_company_ids(user.to_dict() or {}))
    return spaces


def user_spaces(uid: str) -> frozenset[str]:
    """The spaces of ``uid`` (cached for ``TENANT_SPACES_CACHE_SECONDS``)."""
    client = get_redis()
    key = SPACES_KEY.format(uid=uid)
    cached = client.get(key)
    if cached is not None:
        return frozenset(json.loads(cached))
    spaces = _resolve_spaces(uid)
    client.set(key, json.dumps(sorted(spaces)), px=int(settings.TENANT_SPACES_CACHE_SECONDS * 1000))
    return frozenset(spaces)


def forget_user_spaces(uid: str) -> None:
    """After a mandate of ``uid`` was created, deleted or changed through this gateway."""
    get_redis().delete(SPACES_KEY.format(uid=uid))


def require_own_space(acting_user: str, space: str) -> None:
    """Scope check of a space argument (``rpc.types.OwnSpace``)."""
    if space not in user_spaces(acting_user):
        raise PermissionDenied("this space is not one of the envelope user's companies")


def require_reachable_user(acting_user: str, recipient: str) -> None:
    """A direct message goes to the sender, or to a user who shares a company with them; nobody else's inbox."""
    if recipient != acting_user and not (user_spaces(acting_user) & user_spaces(recipient)):
        raise PermissionDenied("the recipient shares no company with the envelope user")


def space_exists(space: str) -> bool:
    """Whether any mandate has this ``contact_space_id`` (one indexed collection-group query, limit 1)."""
    query = get_firestore().collection_group("mandates").where(filter=FieldFilter("contact_space_id", "==", space))
    return bool(query.limit(1).select([]).get())
