"""``CHROMA_VECTOR.*`` with the objects the Reflex app works with: a collection instance and a storage analyzer.

``ChromaVectorService().create_chroma_instance(name)`` opens (creating if missing) the collection and returns a
``ChromaCollection``; ``create_analyzer_instance(name)`` checks the collection exists (``NotFound`` otherwise) and
returns a ``ChromaAnalyzer``. Their methods return what the Reflex UI reads (seed, "APPLICATION REFLEX - À VÉRIFIER"):

================================  ==========================================================================
``analyzer.get_collection_size()`` the analysis itself: ``{total_size, embeddings_size, documents_size,
                                   metadata_size, document_count}`` (bytes), not ``{success, analysis}``
``analyzer.analyze_collection()``  the same dict
``analyzer.generate_report()``     the same dict (the report the gateway generates from those numbers)
``analyzer.analyze_storage_full()`` ``{success: True, data: {storage_size_gb, storage_percentage,
                                   storage_details}}``, the "Vector Database Storage" widget's format as the
                                   original service returned it
``collection.add_documents()``     ``{success, collection_name, documents_added, ids}``
``collection.query_documents()``   Chroma's result dict ``{ids, documents, metadatas, distances}`` (one list per
                                   query text, nearest first), as a local collection returns it
``collection.delete_documents()``  ``{success, collection_name, deleted}``
``collection.get_collection_info()`` ``{success, collection_name, document_count}``
================================  ==========================================================================

A failure raises the typed error (``NotFound`` for a missing collection, ``InvalidArgs``, ``Unavailable``...) instead
of returning ``{"success": false, "error": ...}``, so the UI's ``except Exception`` branch shows it.
Every other ``CHROMA_VECTOR.*`` method is available on the service as on any namespace proxy.
"""
from __future__ import annotations

from typing import Any, Awaitable, Mapping

from .proxies import NamespaceProxy, then


class ChromaVectorService(NamespaceProxy):
    namespace = "CHROMA_VECTOR"

    def create_chroma_instance(self, collection_name: str) -> "ChromaCollection | Awaitable[ChromaCollection]":
        """Open (or create) ``collection_name`` on the gateway; returns its ``ChromaCollection``."""
        return then(self._invoke("create_chroma_instance", (collection_name,), {}),
                    lambda info: ChromaCollection(self, collection_name, info))

    def create_analyzer_instance(self, collection_name: str) -> "ChromaAnalyzer | Awaitable[ChromaAnalyzer]":
        """A storage analyzer for an existing collection (``NotFound`` when it does not exist)."""
        return then(self._invoke("create_analyzer_instance", (collection_name,), {}),
                    lambda info: ChromaAnalyzer(self, collection_name, info))


def get_chroma_vector_proxy(**options: Any) -> ChromaVectorService:
    """What the Reflex app calls ``chroma_proxy``; ``options`` as for any proxy (client, user_id, asynchronous...)."""
    return ChromaVectorService(**options)


class _CollectionObject:
    def __init__(self, service: ChromaVectorService, collection_name: str, info: Mapping[str, Any]) -> None:
        self.service = service
        self.collection_name = collection_name
        self.info = dict(info)  # what the create_* call returned (collection_id, message...)

    def _call(self, method: str, **kwargs: Any) -> Any:
        # Unset optional arguments are left out: the gateway applies its defaults, and the envelope stays minimal.
        given = {name: value for name, value in kwargs.items() if value is not None}
        return self.service._invoke(method, (self.collection_name,), given)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.collection_name!r}>"


class ChromaCollection(_CollectionObject):
    """One collection, as ``create_chroma_instance`` returns it (the original ``ChromaKLKProxy``)."""

    @property
    def collection_id(self) -> str | None:
        return self.info.get("collection_id")

    def add_documents(self, documents: list[str], metadatas: list[dict[str, Any] | None] | None = None,
                      ids: list[str] | None = None) -> Any:
        """Embed and add; ids default to new uuid4s. Returns ``{success, collection_name, documents_added, ids}``."""
        return self._call("add_documents", documents=documents, metadatas=metadatas, ids=ids)

    def query_documents(self, query_texts: list[str], n_results: int = 10,
                        where: dict[str, Any] | None = None) -> Any:
        """Chroma's result dict: ``{ids, documents, metadatas, distances, ...}``, one list per query text."""
        return then(self._call("query_documents", query_texts=query_texts, n_results=n_results, where=where),
                    lambda result: result["results"])

    def delete_documents(self, where: dict[str, Any] | None = None, ids: list[str] | None = None) -> Any:
        return self._call("delete_documents", where=where, ids=ids)

    def get_collection_info(self) -> Any:
        return self._call("get_collection_info")


class ChromaAnalyzer(_CollectionObject):
    """Storage analysis of one collection, as ``create_analyzer_instance`` returns it (``ChromaAnalyzerProxy``)."""

    def get_collection_size(self) -> Any:
        """``{total_size, embeddings_size, documents_size, metadata_size, document_count}``, sizes in bytes."""
        return then(self._call("analyze_collection"), lambda result: result["analysis"])

    def analyze_collection(self) -> Any:
        return self.get_collection_size()

    def generate_report(self) -> Any:
        return then(self._call("generate_report"), lambda result: result["report"])

    def analyze_storage_full(self, max_storage: float = 10.0) -> Any:
        """``{success: True, data: {storage_size_gb, storage_percentage (of max_storage GB, capped at 100),
        storage_details}}``."""
        return self._call("analyze_storage_full", max_storage=max_storage)
