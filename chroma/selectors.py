"""Reads: collection registrations (for the admin), searches, counts and exact size analyses."""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass
from typing import Any

from core.integrations import chroma as chroma_adapter
from core.integrations.redis import get_redis
from core.errors import InvalidArgs

from . import store
from .analysis import CollectionSizes, measure_collection
from .services import REGISTRATION_INDEX_KEY, normalise_where


@dataclass(frozen=True)
class CollectionRegistration:
    user_id: str
    collection_name: str
    session_id: str
    registered_at: str
    last_heartbeat: str
    expires_at: dt.datetime


def list_collection_registrations(
    *, user_id: str | None = None, limit: int = 1000, prune: bool = True
) -> list[CollectionRegistration]:
    """Live registrations, soonest to expire first (optionally one user's); stale index entries are pruned unless
    ``prune`` is False (a read that must change nothing: ``cleanup_registry --dry-run``)."""
    client = get_redis()
    now_ms = int(time.time() * 1000)
    if prune:
        client.zremrangebyscore(REGISTRATION_INDEX_KEY, "-inf", now_ms)
    keys = client.zrangebyscore(REGISTRATION_INDEX_KEY, now_ms, "+inf", start=0, num=limit)
    if not keys:
        return []
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
        pipe.pttl(key)
    replies = pipe.execute()
    registrations, vanished = [], []
    for key, fields, ttl_ms in zip(keys, replies[::2], replies[1::2], strict=True):
        if not fields or ttl_ms < 0:
            vanished.append(key)  # expired since the range read, or deleted by hand without its index entry
            continue
        text = {name.decode(): value.decode() for name, value in fields.items()}
        if user_id is not None and text.get("user_id") != user_id:
            continue
        registrations.append(
            CollectionRegistration(
                user_id=text.get("user_id", ""),
                collection_name=text.get("collection_name", ""),
                session_id=text.get("session_id", ""),
                registered_at=text.get("registered_at", ""),
                last_heartbeat=text.get("last_heartbeat", ""),
                expires_at=dt.datetime.fromtimestamp((now_ms + ttl_ms) / 1000, tz=dt.timezone.utc),
            )
        )
    if vanished and prune:
        client.zrem(REGISTRATION_INDEX_KEY, *vanished)
    return registrations


def query_documents(
    *, collection_name: str, query_texts: list[str], n_results: int = 10, where: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Nearest documents per query text: Chroma's result dict (ids, documents, metadatas, distances, ...)."""
    if not query_texts:
        raise InvalidArgs("query_texts must not be empty")
    chroma_where = normalise_where(where)
    result = store.with_collection(
        collection_name,
        lambda collection: collection.query(query_texts=query_texts, n_results=n_results, where=chroma_where),
        embeds=True,
    )
    return _plain(dict(result))


def _plain(value: Any) -> Any:
    """numpy arrays and scalars (Chroma returns them for distances/embeddings) as plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def collection_document_count(*, collection_name: str) -> int:
    return store.with_collection(collection_name, lambda collection: collection.count(), embeds=False)


def collection_sizes(*, collection_name: str) -> CollectionSizes:
    return store.with_collection(collection_name, measure_collection, embeds=False)


def chroma_stats(*, registrations_limit: int = 1000) -> dict[str, Any]:
    """What ``manage.py chroma_stats`` prints: backend, collections with counts, live registrations."""
    collections = [asdict(summary) for summary in store.list_collection_summaries()]
    registrations = [
        {**asdict(registration), "expires_at": registration.expires_at.isoformat().replace("+00:00", "Z")}
        for registration in list_collection_registrations(limit=registrations_limit)
    ]
    return {
        "backend": chroma_adapter.describe(),
        "collections": collections,
        "collection_count": len(collections),
        "document_count": sum(item["document_count"] for item in collections),
        "registrations": registrations,
        "registration_count": len(registrations),
    }
