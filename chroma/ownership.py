"""Who may use a Chroma collection (README, "Security", rule 7).

* A collection is owned by the user who created it through this gateway: ``gateway_owner`` in its metadata, written
  when it is created and never changed (Chroma keeps an existing collection's metadata on ``get_or_create``).
* A collection named after a space (the Reflex app keeps one per company, named by its ``contact_space_id``) is
  shared by that space's users (``core.tenancy.user_spaces``), whoever created it.
* Anyone else gets PERMISSION_DENIED, on every method. A collection without an owner (created before this rule, or
  outside the gateway) is reachable only through its space name.
* Nobody creates a collection named after a space that is not theirs: it would make them its owner, and so a reader of
  what that company's users add to it later.
"""
from __future__ import annotations

from typing import Any

from core import tenancy
from core.errors import PermissionDenied

OWNER_KEY = "gateway_owner"


def owner_metadata(owner: str) -> dict[str, str]:
    return {OWNER_KEY: owner}


def require_access(acting_user: str, collection_name: str, metadata: dict[str, Any] | None) -> None:
    """Refuse unless ``acting_user`` owns the existing collection or it is named after one of their spaces."""
    if (metadata or {}).get(OWNER_KEY) == acting_user:
        return
    if collection_name in tenancy.user_spaces(acting_user):
        return
    raise PermissionDenied(f"collection {collection_name!r} belongs to another user")


def require_creatable(acting_user: str, collection_name: str) -> None:
    """Before creating ``collection_name`` for ``acting_user``: not another company's space name."""
    if collection_name in tenancy.user_spaces(acting_user):
        return
    if tenancy.space_exists(collection_name):
        raise PermissionDenied(f"collection {collection_name!r} is named after another company's space")
