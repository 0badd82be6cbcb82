"""Migrating a collection embedded by another function (the original's OpenAI ada-002, 1,536-d) to the bundled model.

Run as a long job (jobs/, kind ``chroma.migrate_collection``) from ``CHROMA_VECTOR.migrate_collection`` or
``manage.py chroma_migrate NAME``; README, "Migrating the original's Chroma collections", walks through it.

1. Copy: page through NAME's documents and metadata, embed them with the bundled model, upsert into
   ``NAME__migrating``. Each page is a checkpoint; upserts make a resumed page harmless.
2. Verify: the ids of both collections agree (records deleted from NAME meanwhile are dropped, missed ones copied),
   and a sample of documents, queried by their own text, find themselves first.
3. Swap: rename NAME to ``NAME__pre_migration``, then ``NAME__migrating`` to NAME. Chroma has no transaction, so the
   state after a crash between the two renames is recognised and the swap completed by the resumed run; in those
   milliseconds NAME reads as NOT_FOUND. ``drop_old`` deletes ``NAME__pre_migration`` afterwards.

Every step looks at which of the three collections exist, so a run resumed at any point (or re-run after success)
does the right thing.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from core.errors import InvalidArgs, NotFound
from core.integrations.chroma import get_chroma
from core.integrations.redis import get_redis
from jobs import selectors as job_selectors, services as job_services
from jobs.types import Job

from . import store
from .embedding import embed, get_embedding_function

log = structlog.get_logger(__name__)

JOB_NAME = "chroma.migrate_collection"
PRE_MIGRATION_SUFFIX = "__pre_migration"
BUILDING_SUFFIX = "__migrating"
PAGE_SIZE = 200  # records embedded per checkpoint: ~1-2 s of model time, so a resumed run repeats little
SAMPLE_QUERIES = 5
# Holds the ref of the job migrating a collection, so two starts never race on the same names.
LOCK_KEY = "chroma:migration:{collection_name}"
LOCK_TTL_S = 7 * 24 * 3600

Report = Callable[..., None]  # jobs.runner.JobContext.progress


def _lock_key(collection_name: str) -> str:
    return LOCK_KEY.format(collection_name=collection_name)


def start_migration(*, uid: str, collection_name: str, drop_old: bool) -> Job:
    """Queue the migration of ``collection_name`` for ``uid`` (who receives its progress events); returns the job.

    A migration of the same collection still in progress is returned as is when ``uid`` started it, refused otherwise.
    """
    store.validate_collection_name(collection_name)
    if not _existing(collection_name):
        raise NotFound(f"collection {collection_name!r} does not exist")
    holder = get_redis().get(_lock_key(collection_name))
    if holder:
        holder_uid, holder_job_id = holder.decode().split(" ", 1)
        try:
            running = job_selectors.get_job(uid=holder_uid, job_id=holder_job_id)
        except NotFound:
            running = None
        if running is not None and not running.done:
            if holder_uid == uid:
                return running
            raise InvalidArgs(f"a migration of collection {collection_name!r} is already in progress")
    job = job_services.start_job(
        uid=uid, name=JOB_NAME, params={"collection_name": collection_name, "drop_old": drop_old}
    )
    get_redis().set(_lock_key(collection_name), f"{uid} {job.job_id}", ex=LOCK_TTL_S)
    return job


def _existing(*names: str) -> dict[str, Any]:
    """The handles (no embedding function attached) of those of ``names`` that exist."""
    from chromadb.errors import NotFoundError

    found = {}
    for name in names:
        try:
            found[name] = get_chroma().get_collection(name, embedding_function=None)
        except NotFoundError:
            continue
    return found


def _is_native(collection: Any) -> bool:
    try:
        store.check_embedding_function(collection.name, collection.configuration_json.get("embedding_function"))
    except InvalidArgs:
        return False
    return True


def migrate(*, collection_name: str, drop_old: bool, report: Report, checkpoint: dict[str, Any] | None) -> dict:
    """The job's body (chroma/jobs.py): copy, verify, swap, optionally drop; returns the job's result."""
    old, building = collection_name + PRE_MIGRATION_SUFFIX, collection_name + BUILDING_SUFFIX
    with store.translate_chroma_errors(collection_name):
        found = _existing(collection_name, old, building)
        current = found.get(collection_name)
        if current is not None and not _is_native(current):
            target = _target(building, current)
            _copy(current, target, report, start=(checkpoint or {}).get("offset", 0))
            _verify(current, target, report)
            report(95, "swapping names", checkpoint={"offset": current.count()})
            current.modify(name=old)
            found = _existing(collection_name, old, building)
        elif current is None and not (old in found and building in found):
            raise NotFound(f"collection {collection_name!r} does not exist")
        if collection_name not in found:  # between the two renames (now, or when an earlier run died)
            found[building].modify(name=collection_name)
        elif old not in found:
            return {"collection_name": collection_name, "already_native": True,
                    "document_count": found[collection_name].count()}
        store.forget_cached_collections()  # handles cached by name point at the renamed collection
        document_count = get_chroma().get_collection(collection_name, embedding_function=None).count()
        if drop_old:
            get_chroma().delete_collection(old)
    log.info("chroma_migrated", collection=collection_name, documents=document_count, dropped_old=drop_old)
    get_redis().delete(_lock_key(collection_name))
    return {
        "collection_name": collection_name, "document_count": document_count,
        "old_collection": None if drop_old else old, "already_native": False,
    }


def _target(name: str, source: Any) -> Any:
    """The collection being built, with the bundled function recorded (created, or found from an earlier run)."""
    metadata = {k: v for k, v in (source.metadata or {}).items() if not k.startswith("hnsw:")} or None
    return get_chroma().get_or_create_collection(
        name, embedding_function=None, metadata=metadata,
        configuration={"embedding_function": get_embedding_function()},
    )


def _copy(source: Any, target: Any, report: Report, *, start: int) -> None:
    total = source.count()
    offset = start
    while offset < total:
        page = source.get(limit=PAGE_SIZE, offset=offset, include=["documents", "metadatas"])
        if not page["ids"]:
            break
        _upsert(target, page, source.name)
        offset += len(page["ids"])
        report(offset * 90 / max(total, 1), f"re-embedded {offset} of {total} documents",
               data={"documents_done": offset, "documents_total": total}, checkpoint={"offset": offset})


def _upsert(target: Any, page: dict[str, Any], source_name: str) -> None:
    documents = page["documents"] or []
    if len(documents) != len(page["ids"]) or any(doc is None for doc in documents):
        raise InvalidArgs(
            f"collection {source_name!r} holds records without document text; they can't be re-embedded"
        )
    metadatas = page.get("metadatas")
    target.upsert(
        ids=page["ids"], embeddings=embed(documents), documents=documents,
        metadatas=metadatas if metadatas and any(m for m in metadatas) else None,
    )


def _verify(source: Any, target: Any, report: Report) -> None:
    report(90, "verifying counts and sample queries")
    source_ids = set(source.get(include=[])["ids"])
    target_ids = set(target.get(include=[])["ids"])
    if target_ids - source_ids:  # deleted from the source while the copy ran
        target.delete(ids=sorted(target_ids - source_ids))
    missing = sorted(source_ids - target_ids)
    for start in range(0, len(missing), PAGE_SIZE):
        _upsert(target, source.get(ids=missing[start:start + PAGE_SIZE], include=["documents", "metadatas"]),
                source.name)
    if target.count() != source.count():
        raise InvalidArgs(f"verification failed: {target.count()} documents copied of {source.count()}")
    total = source.count()
    for n in range(min(SAMPLE_QUERIES, total)):
        sample = source.get(limit=1, offset=n * total // SAMPLE_QUERIES, include=["documents"])
        text = sample["documents"][0]
        hits = target.query(query_embeddings=embed([text]), n_results=1, include=["documents"])
        if hits["ids"][0][0] != sample["ids"][0] and hits["documents"][0][0] != text:
            raise InvalidArgs("verification failed: a sample document queried by its own text did not come first")
