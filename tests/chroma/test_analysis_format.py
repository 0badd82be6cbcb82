"""The storage widget's text and numbers, without Chroma."""
from __future__ import annotations

import pytest

from chroma.analysis import CollectionSizes, format_size, metadata_bytes, storage_summary


def test_storage_percentage_is_capped_and_details_sum_to_100():
    sizes = CollectionSizes(document_count=2, embeddings_size=3 * 1024**3, documents_size=1024**3, metadata_size=0)
    summary = storage_summary(sizes, max_storage_gb=1.0)
    assert summary["storage_percentage"] == 100
    assert summary["storage_size_gb"] == 4.0
    assert "embeddings: 3.00 GB (75.0%)" in summary["storage_details"]
    assert "documents: 1.00 GB (25.0%)" in summary["storage_details"]
    assert "metadata: 0 B (0.0%)" in summary["storage_details"]


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.00 KB"), (1536 * 1024, "1.50 MB"), (1024**3, "1.00 GB"),
     (2 * 1024**4, "2.00 TB")],
)
def test_format_size(size, text):
    assert format_size(size) == text


def test_metadata_bytes_counts_compact_utf8_json_and_nothing_for_empty():
    assert metadata_bytes(None) == 0
    assert metadata_bytes({}) == 0
    assert metadata_bytes({"b": 1, "a": "é"}) == len('{"a":"é","b":1}'.encode())
