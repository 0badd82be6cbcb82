"""CHROMA_VECTOR.* — the Reflex app's vector storage, with the original service's names, arguments and result shapes.

Failures are typed errors (``NOT_FOUND`` for a missing collection, ``INVALID_ARGS`` for bad input or a collection
built with another embedding function, ``UNAVAILABLE`` when a Chroma server can't be reached) instead of the
original's ``{"success": false, "error": str(e)}``; successful results keep ``"success": true``.

Data methods take no user, as in the original: the envelope's ``user_id`` is the acting user, and every collection
argument is ``OwnCollection`` — created by that user, or named after one of their spaces (the Reflex app keeps one
per company, e.g. ``klk_space_id_002e0b``); anyone else gets PERMISSION_DENIED before the call (``chroma/ownership.py``,
README "Security", rule 7). Registrations are per user and only the envelope's user can touch its own.
"""
from __future__ import annotations

from typing import Annotated, Any

from rpc.registry import Namespace
from core.errors import PermissionDenied
from core.tenancy import acting_user_var
from rpc.types import Bounded, Identifier, InUserTree, MaxLen, Owned, UserId, Within

from . import migration, selectors, services
from .analysis import storage_summary
from .store import CollectionNameRule, require_collection_access

ns = Namespace("CHROMA_VECTOR")

MAX_DOCUMENTS_PER_CALL = 10_000  # split into the client's max batch size (5,461 locally); the body limit binds first
MAX_DOCUMENT_CHARS = 100_000  # the model reads 256 tokens; longer text is stored whole but embedded truncated
MAX_QUERY_TEXTS = 100
MAX_N_RESULTS = 500

OwnCollection = Annotated[str, CollectionNameRule(), Owned(require_collection_access, "chroma_collection")]
# A label kept in the acting user's own registration (registry:chroma:{user_id}:…), not a REGISTRY session handle.
SessionId = Annotated[str, Identifier(256), InUserTree()]
DocumentText = Annotated[str, MaxLen(MAX_DOCUMENT_CHARS)]
DocumentId = Annotated[str, MaxLen(512), Within("collection_name")]
QueryText = Annotated[str, MaxLen(10_000)]


def _owner() -> str:
    """The envelope's user: the registry has checked it owns the collection argument (OwnCollection)."""
    owner = acting_user_var.get()
    if owner is None:  # unreachable through /rpc, where OwnCollection requires an envelope user_id
        raise PermissionDenied("this method acts for a user: the envelope needs a user_id")
    return owner


@ns.method(writes=True)
def register_collection_user(user_id: UserId, collection_name: OwnCollection, session_id: SessionId) -> dict[str, str]:
    """Register the user on a collection for 90 s (renew with heartbeat_collection); returns the stored entry:
    {user_id, collection_name, session_id, registered_at, last_heartbeat}."""
    return services.register_collection_user(user_id=user_id, collection_name=collection_name, session_id=session_id)


@ns.method(writes=True)
def heartbeat_collection(user_id: UserId, collection_name: OwnCollection) -> dict[str, Any]:
    """Extend a live registration by 90 s. heartbeat_updated is false when it expired: register again."""
    updated = services.heartbeat_collection_user(user_id=user_id, collection_name=collection_name)
    return {"user_id": user_id, "collection_name": collection_name, "heartbeat_updated": updated}


@ns.method(writes=True)
def unregister_collection_user(user_id: UserId, collection_name: OwnCollection) -> dict[str, Any]:
    """Remove the user's registration; unregistered is false when there was none."""
    removed = services.unregister_collection_registration(user_id=user_id, collection_name=collection_name)
    return {"user_id": user_id, "collection_name": collection_name, "unregistered": removed}


@ns.method(writes=True)
def create_chroma_instance(collection_name: OwnCollection) -> dict[str, Any]:
    """Open the collection, creating it (with the bundled embedding function) if missing:
    {success, collection_name, message, collection_id}."""
    collection_id = services.ensure_collection(collection_name=collection_name, owner=_owner())
    return {
        "success": True,
        "collection_name": collection_name,
        "message": f"Chroma instance ready for collection '{collection_name}'",
        "collection_id": collection_id,
    }


@ns.method(writes=False)
def create_analyzer_instance(collection_name: OwnCollection) -> dict[str, Any]:
    """Check the collection exists (NOT_FOUND if missing) before the app asks for its analyses: {success,
    collection_name, message, analyzer_ready}."""
    selectors.collection_document_count(collection_name=collection_name)
    return {
        "success": True,
        "collection_name": collection_name,
        "message": f"Analyzer ready for collection '{collection_name}'",
        "analyzer_ready": True,
    }


@ns.method(writes=True)
def add_documents(
    collection_name: OwnCollection,
    documents: Annotated[list[DocumentText], MaxLen(MAX_DOCUMENTS_PER_CALL)],
    metadatas: Annotated[list[dict[str, Any] | None], MaxLen(MAX_DOCUMENTS_PER_CALL)] | None = None,
    ids: Annotated[list[DocumentId], MaxLen(MAX_DOCUMENTS_PER_CALL)] | None = None,
) -> dict[str, Any]:
    """Embed (locally) and add documents, creating the collection if missing; ids default to new uuid4s:
    {success, collection_name, documents_added, ids}. Large adds take time: raise timeout_ms accordingly."""
    stored_ids = services.add_documents(
        collection_name=collection_name, owner=_owner(), documents=documents, metadatas=metadatas, ids=ids
    )
    return {"success": True, "collection_name": collection_name, "documents_added": len(documents), "ids": stored_ids}


@ns.method(writes=False)
def query_documents(
    collection_name: OwnCollection,
    query_texts: Annotated[list[QueryText], MaxLen(MAX_QUERY_TEXTS)],
    n_results: Annotated[int, Bounded(1, MAX_N_RESULTS)] = 10,
    where: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Semantic search: {success, collection_name, results} where results is Chroma's dict (ids, documents,
    metadatas, distances: one list per query text, nearest first). where is a Chroma filter; {"a": 1, "b": 2}
    means both equalities."""
    results = selectors.query_documents(
        collection_name=collection_name, query_texts=query_texts, n_results=n_results, where=where
    )
    return {"success": True, "collection_name": collection_name, "results": results}


@ns.method(writes=True)
def delete_documents(
    collection_name: OwnCollection,
    where: dict[str, Any] | None = None,
    ids: Annotated[list[DocumentId], MaxLen(MAX_DOCUMENTS_PER_CALL)] | None = None,
) -> dict[str, Any]:
    """Delete documents by ids and/or where filter (one is required): {success, collection_name, deleted}."""
    services.delete_documents(collection_name=collection_name, where=where, ids=ids)
    return {"success": True, "collection_name": collection_name, "deleted": True}


@ns.method(writes=False)
def get_collection_info(collection_name: OwnCollection) -> dict[str, Any]:
    """{success, collection_name, document_count}."""
    count = selectors.collection_document_count(collection_name=collection_name)
    return {"success": True, "collection_name": collection_name, "document_count": count}


@ns.method(writes=False)
def analyze_collection(collection_name: OwnCollection) -> dict[str, Any]:
    """Exact stored sizes in bytes: {success, collection_name, analysis: {total_size, embeddings_size,
    documents_size, metadata_size, document_count}}."""
    sizes = selectors.collection_sizes(collection_name=collection_name)
    return {"success": True, "collection_name": collection_name, "analysis": sizes.as_analysis()}


@ns.method(writes=False)
def generate_report(collection_name: OwnCollection) -> dict[str, Any]:
    """analyze_collection's numbers as a report: {success, collection_name, report, message}."""
    sizes = selectors.collection_sizes(collection_name=collection_name)
    return {
        "success": True,
        "collection_name": collection_name,
        "report": sizes.as_analysis(),
        "message": f"Report generated for collection '{collection_name}'",
    }


@ns.method(writes=False)
def analyze_storage_full(
    collection_name: OwnCollection, max_storage: Annotated[float, Bounded(0.001, 1_000_000)] = 10.0
) -> dict[str, Any]:
    """What the "Vector Database Storage" widget shows: {success, data: {storage_size_gb, storage_percentage
    (of max_storage GB, capped at 100), storage_details (text)}}."""
    sizes = selectors.collection_sizes(collection_name=collection_name)
    return {"success": True, "data": storage_summary(sizes, max_storage_gb=max_storage)}


@ns.method(writes=True)
def migrate_collection(
    user_id: UserId, collection_name: OwnCollection, drop_old: bool = False
) -> dict[str, Any]:
    """Re-embed a collection built by another embedding function (e.g. the original's OpenAI vectors) with the
    bundled model, as a long job: returns {success, collection_name, job_id, status} at once; progress arrives as
    service.progress_update on user:{user_id} and from REGISTRY.get_job. The old collection is kept as
    <name>__pre_migration unless drop_old. Until it finishes, counts, analyses and deletes by id keep working."""
    job = migration.start_migration(uid=user_id, collection_name=collection_name, drop_old=drop_old)
    return {"success": True, "collection_name": collection_name, "job_id": job.job_id, "status": job.status}
