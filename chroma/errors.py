"""Chroma-specific failures, expressed with the contract's error codes (core/errors.py)."""
from __future__ import annotations

from core.errors import InvalidArgs


class EmbeddingFunctionMismatch(InvalidArgs):
    """The collection exists but its vectors come from another embedding function (or none was recorded).

    Writing our vectors into it, or querying it with them, would compare points from two different spaces and
    return confident nonsense; the original never checked. Code ``INVALID_ARGS``: the caller named a collection this
    service can't serve yet. The message says which function the collection records and how to migrate it
    (chroma/migration.py).
    """

    def __init__(self, collection_name: str, recorded: str) -> None:
        super().__init__(
            f"collection {collection_name!r} was built with embedding function {recorded}, not the service's "
            "bundled_minilm_int8; its vectors can't be mixed. Migrate it (re-embeds its documents; reads that embed "
            f"nothing keep working meanwhile): manage.py chroma_migrate {collection_name}, or "
            "CHROMA_VECTOR.migrate_collection"
        )
        self.collection_name = collection_name
        self.recorded = recorded
