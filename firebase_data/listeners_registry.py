"""``listeners_registry/{uid}``: the Firestore document where the Reflex app states which companies a user may see.

The original service read ``authorized_companies_ids`` from it for every notification and message sync; the app still
writes it, so the listeners worker reads it when no registration of the user names companies (workflows/listeners/
base.py). An empty or malformed list filters nothing, as in the original.
"""
from __future__ import annotations

from google.cloud.firestore_v1 import DocumentSnapshot

from core.integrations.firebase import get_firestore

COLLECTION = "listeners_registry"
FIELD = "authorized_companies_ids"


def authorized_company_ids(uid: str) -> list[str] | None:
    """The user's companies from the app's registry document, sorted; None when it names none. Raises the Firestore
    client's errors (google.api_core) when Firestore is unreachable."""
    return _company_ids(get_firestore().collection(COLLECTION).document(uid).get())


def authorized_company_ids_many(uids: list[str]) -> dict[str, list[str] | None]:
    """``authorized_company_ids`` of many users, one batched Firestore read (BatchGetDocuments) per 300 users."""
    db = get_firestore()
    found: dict[str, list[str] | None] = {}
    for start in range(0, len(uids), 300):
        refs = [db.collection(COLLECTION).document(uid) for uid in uids[start:start + 300]]
        for snapshot in db.get_all(refs):
            found[snapshot.id] = _company_ids(snapshot)
    return {uid: found.get(uid) for uid in uids}


def _company_ids(snapshot: DocumentSnapshot) -> list[str] | None:
    ids = (snapshot.to_dict() or {}).get(FIELD) if snapshot.exists else None
    if not isinstance(ids, list):
        return None
    return sorted({company for company in ids if isinstance(company, str) and company}) or None
