"""Exact sizes: analyze_collection, generate_report, analyze_storage_full, create_analyzer_instance."""
from __future__ import annotations

import json

import pytest

from chroma import analysis
from chroma.analysis import format_size

pytestmark = pytest.mark.usefixtures("chroma_mode")

DOCUMENTS = ["plain ascii text", "accentué, déjà vu", "日本語のテキスト", "x" * 1000, "last one"]
METADATAS = [{"source": "journal", "n": 3}, None, {"flag": True, "ratio": 0.5, "label": "ümlaut"}, None, {"k": "v"}]


def expected_sizes(documents, metadatas) -> dict[str, int]:
    documents_size = sum(len(doc.encode("utf-8")) for doc in documents)
    metadata_size = sum(
        len(json.dumps(m, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8"))
        for m in metadatas if m
    )
    embeddings_size = len(documents) * 384 * 4
    return {
        "total_size": documents_size + metadata_size + embeddings_size,
        "embeddings_size": embeddings_size,
        "documents_size": documents_size,
        "metadata_size": metadata_size,
        "document_count": len(documents),
    }


def test_analyze_collection_is_exact_on_a_known_collection(call, collection_name):
    call("add_documents", collection_name, DOCUMENTS, METADATAS)
    data = call("analyze_collection", collection_name).data
    assert data == {"success": True, "collection_name": collection_name,
                    "analysis": expected_sizes(DOCUMENTS, METADATAS)}


def test_analysis_is_exact_across_page_boundaries(call, collection_name, monkeypatch):
    monkeypatch.setattr(analysis, "_PAGE_SIZE", 2)  # 5 records: pages of 2, 2, 1
    call("add_documents", collection_name, DOCUMENTS, METADATAS)
    assert call("analyze_collection", collection_name).data["analysis"] == expected_sizes(DOCUMENTS, METADATAS)


def test_analysis_of_an_empty_collection_is_all_zeros(call, collection_name):
    call("create_chroma_instance", collection_name)
    zeros = {"total_size": 0, "embeddings_size": 0, "documents_size": 0, "metadata_size": 0, "document_count": 0}
    assert call("analyze_collection", collection_name).data["analysis"] == zeros
    storage = call("analyze_storage_full", collection_name).data["data"]
    assert storage["storage_size_gb"] == 0 and storage["storage_percentage"] == 0
    assert storage["storage_details"].startswith("Total amount of documents: 0\n")


def test_analysis_with_no_metadata_at_all(call, collection_name):
    """The original divided by zero when every sampled metadata was empty."""
    documents = ["one", "two", "three"]
    call("add_documents", collection_name, documents, [{}, {}, {}])
    analysis_ = call("analyze_collection", collection_name).data["analysis"]
    assert analysis_["metadata_size"] == 0
    assert analysis_ == expected_sizes(documents, [None, None, None])


def test_generate_report_carries_the_same_numbers(call, collection_name):
    call("add_documents", collection_name, DOCUMENTS, METADATAS)
    data = call("generate_report", collection_name).data
    assert data["success"] is True and data["collection_name"] == collection_name and data["message"]
    assert data["report"] == expected_sizes(DOCUMENTS, METADATAS)


def test_analyze_storage_full_gives_the_widget_format(call, collection_name):
    call("add_documents", collection_name, DOCUMENTS, METADATAS)
    sizes = expected_sizes(DOCUMENTS, METADATAS)
    data = call("analyze_storage_full", collection_name, 0.001).data
    assert data["success"] is True
    storage = data["data"]
    assert set(storage) == {"storage_size_gb", "storage_percentage", "storage_details"}
    assert storage["storage_size_gb"] == round(sizes["total_size"] / 1024**3, 6)
    assert storage["storage_percentage"] == min(100, int(sizes["total_size"] / 1024**3 / 0.001 * 100))
    lines = storage["storage_details"].split("\n")
    assert lines[0] == "Total amount of documents: 5"
    assert lines[1].startswith(f"embeddings: {format_size(sizes['embeddings_size'])} (")
    assert [line.split(":")[0] for line in lines[1:]] == ["embeddings", "documents", "metadata"]


def test_create_analyzer_instance_reports_ready(call, collection_name):
    call("create_chroma_instance", collection_name)
    assert call("create_analyzer_instance", collection_name).data == {
        "success": True, "collection_name": collection_name,
        "message": f"Analyzer ready for collection '{collection_name}'", "analyzer_ready": True,
    }
