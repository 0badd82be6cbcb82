"""Firestore helpers shared by the domain modules: tenant paths, id checks, snapshot shaping, chunked batches."""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable

from google.cloud.firestore_v1 import DocumentReference, DocumentSnapshot
from google.cloud.firestore_v1.field_path import FieldPath

from core.integrations.firebase import get_firestore
from core.errors import InvalidArgs
from rpc.types import Identifier

# Firestore refuses a batch or transaction with more writes than this.
MAX_BATCH_WRITES = 500
# Firestore's `in` filter takes at most 30 values.
MAX_IN_VALUES = 30


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso_utc(value: dt.datetime) -> str:
    """ISO-8601 UTC with a ``Z``, for the places that store text (RTDB) rather than a timestamp."""
    return value.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def client_path(uid: str, *segments: str) -> str:
    return "/".join(("clients", uid, *segments))


def require_id(name: str, value: Any) -> str:
    """Check an identifier that arrives inside a payload (the registry checks top-level arguments itself)."""
    if not isinstance(value, str):
        raise InvalidArgs(f"{name} must be a string")
    Identifier().check(name, value)
    return value


def require_collection_path(name: str, path: str) -> str:
    """A collection path has an odd number of segments (``clients/{uid}/notifications``)."""
    clean = path.strip("/")
    if len(clean.split("/")) % 2 == 0:
        raise InvalidArgs(f"{name} must be a collection path (an odd number of segments)")
    return clean


def require_document_path(name: str, path: str) -> str:
    clean = path.strip("/")
    if len(clean.split("/")) % 2 == 1:
        raise InvalidArgs(f"{name} must be a document path (an even number of segments)")
    return clean


def with_id(snapshot: DocumentSnapshot, key: str = "id") -> dict[str, Any]:
    data = snapshot.to_dict() or {}
    data[key] = snapshot.id
    return data


def chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def delete_documents(refs: Iterable[DocumentReference]) -> int:
    """Delete in batches of 500: each batch is atomic; a retry after a failure finishes the job (deletes are idempotent)."""
    db = get_firestore()
    unique = list({ref.path: ref for ref in refs}.values())
    for group in chunks(unique, MAX_BATCH_WRITES):
        batch = db.batch()
        for ref in group:
            batch.delete(ref)
        batch.commit()
    return len(unique)


def descendants(ref: DocumentReference) -> list[DocumentReference]:
    """Every existing document below ``ref``, at any depth: one kindless query per direct subcollection."""
    found: list[DocumentReference] = []
    for collection in ref.collections():
        query = collection.recursive().select([FieldPath.document_id()])
        found.extend(snapshot.reference for snapshot in query.stream())
    return found


def owned_by(path: str, uid: str) -> bool:
    return path.startswith(f"clients/{uid}/")
