"""Writes: the collection registry in Redis, and documents in Chroma.

Registry: each registration is the original hash ``registry:chroma:{user_id}:{collection_name}`` (user_id,
collection_name, session_id, registered_at, last_heartbeat; times as ``%Y-%m-%dT%H:%M:%SZ``) expiring 90 s after the
last register or heartbeat. A heartbeat refreshes only a live registration: an expired one must register again, as
before. Added: the sorted set ``registry:chroma-index`` (member = hash key, score = expiry in ms) so the admin can list
registrations without SCANning the keyspace, and a Lua heartbeat, so a registration expiring between "exists?" and
"refresh" can't come back as a TTL-less half hash (the original ran EXISTS, HSET, EXPIRE as three commands).

Redis Cluster: the hash keeps the original's name, which has no hash tag, so it and the index live in different
slots and no script or transaction may hold both. The index is therefore a superset of the live registrations: it is
written before the hash (register, heartbeat) and cleaned after it (unregister, a heartbeat that finds nothing), in
one pipelined round trip, and the listing (chroma/selectors.py) drops entries whose hash has gone.
"""
from __future__ import annotations

import time
import uuid
from typing import Any

import structlog

from core.integrations.redis import get_redis
from core.errors import InvalidArgs

from . import store

log = structlog.get_logger(__name__)

REGISTRATION_TTL_S = 90  # the original's value (the same as the presence TTL)
REGISTRATION_KEY = "registry:chroma:{user_id}:{collection_name}"
REGISTRATION_INDEX_KEY = "registry:chroma-index"
REGISTRY_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# KEYS: hash. ARGV: now (formatted), ttl seconds.
_HEARTBEAT_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'last_heartbeat', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


def registration_key(*, user_id: str, collection_name: str) -> str:
    return REGISTRATION_KEY.format(user_id=user_id, collection_name=collection_name)


def _now() -> tuple[str, int]:
    now = time.time()
    return time.strftime(REGISTRY_TIME_FORMAT, time.gmtime(now)), int(now * 1000)


def register_collection_user(*, user_id: str, collection_name: str, session_id: str) -> dict[str, str]:
    """(Re)register ``user_id`` on a collection for 90 s; returns the stored hash, as the original did."""
    stamp, now_ms = _now()
    key = registration_key(user_id=user_id, collection_name=collection_name)
    payload = {
        "user_id": user_id,
        "collection_name": collection_name,
        "session_id": session_id,
        "registered_at": stamp,
        "last_heartbeat": stamp,
    }
    pipe = get_redis().pipeline(transaction=False)
    pipe.zadd(REGISTRATION_INDEX_KEY, {key: now_ms + REGISTRATION_TTL_S * 1000})  # index first (module docstring)
    pipe.hset(key, mapping=payload)
    pipe.expire(key, REGISTRATION_TTL_S)
    pipe.execute()
    log.info("chroma_register", user_id=user_id, collection=collection_name)
    return payload


def heartbeat_collection_user(*, user_id: str, collection_name: str) -> bool:
    """Extend a live registration by 90 s; False when it has expired or never existed."""
    stamp, now_ms = _now()
    key = registration_key(user_id=user_id, collection_name=collection_name)
    expiry_ms = now_ms + REGISTRATION_TTL_S * 1000
    # Index first, hash next; a registration that had expired leaves the index at once.
    pipe = get_redis().pipeline(transaction=False)
    pipe.zadd(REGISTRATION_INDEX_KEY, {key: expiry_ms})
    pipe.execute_command("EVAL", _HEARTBEAT_SCRIPT, 1, key, stamp, REGISTRATION_TTL_S)  # cluster pipelines block eval()
    _, refreshed = pipe.execute()
    if not refreshed:
        get_redis().zrem(REGISTRATION_INDEX_KEY, key)
    log.info("chroma_heartbeat", user_id=user_id, collection=collection_name, refreshed=bool(refreshed))
    return bool(refreshed)


def unregister_collection_registration(*, user_id: str, collection_name: str) -> bool:
    """Remove one registration (the owner over RPC, or staff in the admin); False when there was none."""
    key = registration_key(user_id=user_id, collection_name=collection_name)
    pipe = get_redis().pipeline(transaction=False)
    pipe.delete(key)
    pipe.zrem(REGISTRATION_INDEX_KEY, key)  # after the hash (module docstring)
    deleted, _ = pipe.execute()
    log.info("chroma_unregister", user_id=user_id, collection=collection_name, existed=bool(deleted))
    return bool(deleted)


def ensure_collection(*, collection_name: str, owner: str) -> str:
    """Create the collection with our embedding function, owned by ``owner``, unless it exists; returns its id."""
    collection_id = store.with_collection(
        collection_name, lambda collection: str(collection.id), embeds=True, create=True, owner=owner
    )
    log.info("chroma_operation", op="ensure_collection", collection=collection_name)
    return collection_id


def normalise_where(where: dict[str, Any] | None) -> dict[str, Any] | None:
    """Chroma filters, plus the Reflex shorthand ``{"a": 1, "b": 2}`` meaning ``$and`` of equalities.

    Chroma rejects a top-level dict with several keys; the original service (later versions) rewrote it this way.
    An empty dict means no filter.
    """
    from chromadb.api.types import validate_where

    if not where:
        return None
    if len(where) > 1 and not any(key.startswith("$") for key in where):
        where = {"$and": [{key: {"$eq": value}} for key, value in where.items()]}
    try:
        validate_where(where)
    except (ValueError, TypeError):
        raise InvalidArgs("where is not a valid Chroma metadata filter") from None
    return where


def _validated_metadatas(metadatas: list[dict[str, Any] | None] | None, count: int) -> list[Any] | None:
    from chromadb.api.types import validate_metadata

    if metadatas is None:
        return None
    if len(metadatas) != count:
        raise InvalidArgs(f"metadatas has {len(metadatas)} items for {count} documents")
    cleaned = [meta or None for meta in metadatas]  # Chroma refuses {}; an empty metadata is no metadata
    for index, meta in enumerate(cleaned):
        try:
            validate_metadata(meta)
        except (ValueError, TypeError):
            raise InvalidArgs(
                f"metadatas[{index}] must map string keys to str, int, float, bool or lists of them"
            ) from None
    return cleaned if any(meta is not None for meta in cleaned) else None


def add_documents(
    *, collection_name: str, owner: str, documents: list[str], metadatas: list[dict[str, Any] | None] | None = None,
    ids: list[str] | None = None,
) -> list[str]:
    """Embed and add ``documents`` (creating the collection for ``owner`` if needed), in batches of the client's
    maximum size.

    Ids default to new uuid4s, as in the original; callers that retry after UNAVAILABLE should pass their own ids,
    since a first attempt may have stored some batches.
    """
    if not documents:
        raise InvalidArgs("documents must not be empty")
    if ids is None:
        ids = [str(uuid.uuid4()) for _ in documents]
    elif len(ids) != len(documents):
        raise InvalidArgs(f"ids has {len(ids)} items for {len(documents)} documents")
    elif len(set(ids)) != len(ids) or not all(ids):
        raise InvalidArgs("ids must be unique, non-empty strings")
    cleaned = _validated_metadatas(metadatas, len(documents))
    batch = store.max_batch_size() or len(documents)

    def add(collection: Any) -> None:
        for start in range(0, len(documents), batch):
            end = start + batch
            collection.add(
                ids=ids[start:end], documents=documents[start:end],
                metadatas=cleaned[start:end] if cleaned is not None else None,
            )

    store.with_collection(collection_name, add, embeds=True, create=True, owner=owner)
    log.info("chroma_operation", op="add", collection=collection_name, documents=len(documents))
    return ids


def delete_documents(
    *, collection_name: str, where: dict[str, Any] | None = None, ids: list[str] | None = None
) -> None:
    """Delete by ids and/or filter; one of them is required (an empty call would otherwise be ambiguous)."""
    chroma_where = normalise_where(where)
    if not ids and chroma_where is None:
        raise InvalidArgs("give ids or a where filter to choose what to delete")
    store.with_collection(
        collection_name, lambda collection: collection.delete(ids=ids or None, where=chroma_where), embeds=False
    )
    log.info("chroma_operation", op="delete", collection=collection_name, ids=len(ids or []), filtered=bool(where))
