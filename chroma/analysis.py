"""Exact collection sizes, by paging through every record (the original extrapolated from five samples and divided
by zero when their metadata was empty).

Definitions (bytes):
* documents: UTF-8 length of each stored document;
* metadata: UTF-8 length of each non-empty metadata as compact JSON (``separators=(",", ":")``, keys sorted,
  non-ASCII kept as UTF-8); a record without metadata counts 0;
* embeddings: records x dimension x 4, since Chroma stores float32 (``get`` hands back float64 arrays, so their
  ``nbytes`` would count double).
There is no size API in Chroma OSS; this is what the records themselves weigh, not the index or SQLite overhead.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

_PAGE_SIZE = 500
_GIB = 1024**3


@dataclass(frozen=True)
class CollectionSizes:
    document_count: int
    embeddings_size: int
    documents_size: int
    metadata_size: int

    @property
    def total_size(self) -> int:
        return self.embeddings_size + self.documents_size + self.metadata_size

    def as_analysis(self) -> dict[str, int]:
        """The original ``analysis`` dict, key for key."""
        return {"total_size": self.total_size, **asdict(self)}


def metadata_bytes(metadata: dict[str, Any] | None) -> int:
    if not metadata:
        return 0
    return len(json.dumps(metadata, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8"))


def measure_collection(collection: Any, *, page_size: int = _PAGE_SIZE) -> CollectionSizes:
    """Page through ``collection`` (a Chroma handle) and add up what every record stores."""
    records = documents_size = metadata_size = 0
    offset = 0
    while True:
        page = collection.get(limit=page_size, offset=offset, include=["documents", "metadatas"])
        ids = page["ids"]
        if not ids:
            break
        documents = page.get("documents") or [None] * len(ids)
        metadatas = page.get("metadatas") or [None] * len(ids)
        records += len(ids)
        documents_size += sum(len(doc.encode("utf-8")) for doc in documents if doc)
        metadata_size += sum(metadata_bytes(meta) for meta in metadatas)
        if len(ids) < page_size:
            break
        offset += len(ids)
    return CollectionSizes(
        document_count=records,
        embeddings_size=records * _dimension(collection) * 4 if records else 0,
        documents_size=documents_size,
        metadata_size=metadata_size,
    )


def _dimension(collection: Any) -> int:
    sample = collection.get(limit=1, include=["embeddings"])["embeddings"]
    return len(sample[0]) if sample is not None and len(sample) else 0


def format_size(size_in_bytes: int) -> str:
    """Human units as the original analyzer printed them (1024-based)."""
    if size_in_bytes < 1024:
        return f"{size_in_bytes} B"
    for unit, power in (("KB", 1), ("MB", 2), ("GB", 3)):
        if size_in_bytes < 1024 ** (power + 1):
            return f"{size_in_bytes / 1024**power:.2f} {unit}"
    return f"{size_in_bytes / 1024**4:.2f} TB"


def storage_summary(sizes: CollectionSizes, *, max_storage_gb: float) -> dict[str, Any]:
    """The ``data`` of ``analyze_storage_full``: what the Reflex "Vector Database Storage" widget renders."""
    total = sizes.total_size
    size_gb = total / _GIB
    percentage = min(100, int(size_gb / max_storage_gb * 100)) if max_storage_gb > 0 else 0

    def share(part: int) -> float:
        return part / total * 100 if total else 0.0

    details = (
        f"Total amount of documents: {sizes.document_count}\n"
        f"embeddings: {format_size(sizes.embeddings_size)} ({share(sizes.embeddings_size):.1f}%)\n"
        f"documents: {format_size(sizes.documents_size)} ({share(sizes.documents_size):.1f}%)\n"
        f"metadata: {format_size(sizes.metadata_size)} ({share(sizes.metadata_size):.1f}%)"
    )
    return {"storage_size_gb": round(size_gb, 6), "storage_percentage": percentage, "storage_details": details}
