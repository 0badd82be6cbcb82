"""Chroma proxies against a live gateway: the result formats the Reflex UI reads (seed, "À VÉRIFIER")."""
from __future__ import annotations

import asyncio

import pytest

from gateway_client import AsyncRpcClient, ChromaAnalyzer, ChromaCollection, ChromaVectorService, NotFound

ANALYSIS_KEYS = {"total_size", "embeddings_size", "documents_size", "metadata_size", "document_count"}
DOCUMENTS = ["Invoice 42 from ACME, 1,250.00 EUR", "Bank statement March", "Contract renewal with Globex"]
METADATAS = [{"source": "journal", "file_name": "a.pdf"}, {"source": "bank"}, {"source": "journal"}]
USER = "user_chroma"  # collections are their creator's (README, "Security", rule 7): the proxy acts for a user


def test_collection_instance_adds_queries_and_deletes(client, collection_name):
    collection = ChromaVectorService(client, user_id=USER).create_chroma_instance(collection_name)
    assert isinstance(collection, ChromaCollection)
    assert collection.collection_name == collection_name and collection.collection_id
    added = collection.add_documents(DOCUMENTS, METADATAS, ids=["d1", "d2", "d3"])
    assert added == {"success": True, "collection_name": collection_name, "documents_added": 3,
                     "ids": ["d1", "d2", "d3"]}
    results = collection.query_documents(["ACME invoice"], n_results=2)
    assert set(results) >= {"ids", "documents", "metadatas", "distances"}  # Chroma's own dict, unwrapped
    assert results["ids"][0][0] == "d1" and len(results["ids"][0]) == 2
    filtered = collection.query_documents(["anything"], n_results=3, where={"source": "journal"})
    assert sorted(filtered["ids"][0]) == ["d1", "d3"]
    assert collection.delete_documents(ids=["d2"])["deleted"] is True
    assert collection.get_collection_info()["document_count"] == 2


def test_analyzer_returns_the_bare_analysis_the_storage_widget_reads(client, collection_name):
    service = ChromaVectorService(client, user_id=USER)
    big_ledger = "ledger line; " * 7_000  # ~90 kB, so a 1 MB quota shows a non-zero percentage
    service.create_chroma_instance(collection_name).add_documents([*DOCUMENTS, big_ledger], [*METADATAS, None])
    analyzer = service.create_analyzer_instance(collection_name)
    assert isinstance(analyzer, ChromaAnalyzer) and analyzer.info["analyzer_ready"] is True

    size = analyzer.get_collection_size()
    assert set(size) == ANALYSIS_KEYS  # not {success, collection_name, analysis}
    assert size["document_count"] == 4 and size["embeddings_size"] > 0 and size["documents_size"] > 90_000
    assert size["total_size"] == size["embeddings_size"] + size["documents_size"] + size["metadata_size"]
    assert analyzer.analyze_collection() == size
    assert analyzer.generate_report() == size

    storage = analyzer.analyze_storage_full()
    assert storage["success"] is True and set(storage["data"]) == {"storage_size_gb", "storage_percentage",
                                                                   "storage_details"}
    assert storage["data"]["storage_size_gb"] == round(size["total_size"] / 1024**3, 6)
    assert isinstance(storage["data"]["storage_percentage"], int)
    assert "Total amount of documents: 4" in storage["data"]["storage_details"]
    small_quota_gb = 0.001
    small = analyzer.analyze_storage_full(max_storage=small_quota_gb)  # max_storage reaches the gateway
    expected = int(size["total_size"] / 1024**3 / small_quota_gb * 100)
    assert small["data"]["storage_percentage"] == expected > storage["data"]["storage_percentage"]


def test_analyzer_of_a_missing_collection_raises_not_found_instead_of_returning_an_error_dict(client):
    with pytest.raises(NotFound):
        ChromaVectorService(client, user_id=USER).create_analyzer_instance("klk_space_never_created")


def test_async_chroma_proxies(gateway_url, service_token, collection_name):
    async def scenario() -> None:
        async with AsyncRpcClient(gateway_url, service_token) as aclient:
            service = ChromaVectorService(aclient, user_id=USER)
            collection = await service.create_chroma_instance(collection_name)
            await collection.add_documents(DOCUMENTS)
            assert len((await collection.query_documents(["bank"], n_results=1))["ids"][0]) == 1
            analyzer = await service.create_analyzer_instance(collection_name)
            assert (await analyzer.get_collection_size())["document_count"] == 3
            assert (await analyzer.generate_report())["document_count"] == 3
            assert (await analyzer.analyze_storage_full())["success"] is True

    asyncio.run(scenario())
