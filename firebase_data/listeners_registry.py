"""``listeners_registry/{uid}``: the Firestore document where the Reflex app states which companies a user may see.

The original service read ``authorized_companies_ids`` from it for every notification and message sync; the app still
writes it, so the listeners worker reads it when no registration of the user names companies (workflows/listeners/
base.py). An empty or malformed list filters nothing, as in the original.
"""
from __future__ import annotations

from core.integrations.firebase import get_firestore

COLLECTION = "listeners_registry"
FIELD = "authorized_companies_ids"


def authorized_company_ids(uid: str) -> list[str] | None:
    """The user's companies from the app's registry document, sorted; None when it names none. Raises the Firestore
    client's errors (google.api_core) when Firestore is unreachable."""
    snapshot = get_firestore().collection(COLLECTION).document(uid).get()
    ids = (snapshot.to_dict() or {}).get(FIELD) if snapshot.exists else None
    if not isinstance(ids, list):
        return None
    return sorted({company for company in ids if isinstance(company, str) and company}) or None
