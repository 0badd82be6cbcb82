"""CHROMA_VECTOR document methods through /rpc, in embedded and server mode."""
from __future__ import annotations

import pytest

from chroma import store
from core.integrations.chroma import get_chroma

pytestmark = pytest.mark.usefixtures("chroma_mode")

DOCUMENTS = [
    "The supplier invoice was paid by bank transfer yesterday.",
    "Our office will be closed on Monday for the public holiday.",
    "The quarterly VAT return must be filed before the end of the month.",
    "The cat is sleeping on the sofa in the living room.",
]
METADATAS = [{"source": "journal", "year": 2025}, {"source": "hr"}, {"source": "journal", "year": 2024}, None]
IDS = ["invoice", "holiday", "vat", "cat"]


def add_sample(call, collection_name: str):
    return call("add_documents", collection_name, DOCUMENTS, METADATAS, IDS)


def test_add_documents_creates_the_collection_and_returns_the_original_shape(call, collection_name):
    result = add_sample(call, collection_name)
    assert result.data == {"success": True, "collection_name": collection_name, "documents_added": 4, "ids": IDS}
    assert call("get_collection_info", collection_name).data == {
        "success": True, "collection_name": collection_name, "document_count": 4,
    }


def test_add_documents_generates_uuid_ids_when_none_are_given(call, collection_name):
    data = call("add_documents", collection_name, ["one document"]).data
    assert len(data["ids"]) == 1 and len(data["ids"][0]) == 36


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("settlement of the vendor bill via wire", "invoice"),
        ("deadline for submitting the sales tax declaration", "vat"),
        ("a kitten napping on the couch", "cat"),
        ("when is the workplace shut", "holiday"),
    ],
)
def test_query_ranks_the_paraphrased_document_first(call, collection_name, query, expected):
    add_sample(call, collection_name)
    data = call("query_documents", collection_name, [query], 2).data
    results = data["results"]
    assert data["success"] is True and data["collection_name"] == collection_name
    assert results["ids"][0][0] == expected
    assert len(results["ids"][0]) == 2
    assert results["documents"][0][0] == DOCUMENTS[IDS.index(expected)]
    assert results["distances"][0][0] < results["distances"][0][1]


def test_query_answers_each_query_text_and_honours_where(call, collection_name):
    add_sample(call, collection_name)
    data = call("query_documents", collection_name, ["paid invoice", "cat"], 10, {"source": "journal"}).data
    results = data["results"]
    assert len(results["ids"]) == 2
    assert set(results["ids"][0]) == set(results["ids"][1]) == {"invoice", "vat"}
    assert all(meta["source"] == "journal" for meta in results["metadatas"][0])


def test_query_accepts_the_multi_key_where_shorthand(call, collection_name):
    add_sample(call, collection_name)
    results = call(
        "query_documents", collection_name, ["tax"], kwargs={"where": {"source": "journal", "year": 2024}}
    ).data["results"]
    assert results["ids"] == [["vat"]]


def test_delete_documents_by_ids_and_by_where(call, collection_name):
    add_sample(call, collection_name)
    assert call("delete_documents", collection_name, kwargs={"ids": ["cat"]}).data == {
        "success": True, "collection_name": collection_name, "deleted": True,
    }
    call("delete_documents", collection_name, {"source": "journal"})
    remaining = call("query_documents", collection_name, ["anything"], 10).data["results"]["ids"][0]
    assert remaining == ["holiday"]


def test_delete_requires_ids_or_a_filter(call, collection_name):
    add_sample(call, collection_name)
    assert call("delete_documents", collection_name).code == "INVALID_ARGS"
    assert call("get_collection_info", collection_name).data["document_count"] == 4


def test_create_chroma_instance_creates_once_and_returns_the_collection_id(call, collection_name):
    first = call("create_chroma_instance", collection_name).data
    second = call("create_chroma_instance", collection_name).data
    assert first["success"] is True and first["collection_name"] == collection_name and first["message"]
    assert first["collection_id"] == second["collection_id"]
    assert first["collection_id"] == str(get_chroma().get_collection(collection_name, embedding_function=None).id)


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("query_documents", (["anything"],)),
        ("get_collection_info", ()),
        ("delete_documents", ({"source": "x"},)),
        ("analyze_collection", ()),
        ("create_analyzer_instance", ()),
        ("generate_report", ()),
        ("analyze_storage_full", ()),
    ],
)
def test_reads_of_a_missing_collection_are_not_found_and_create_nothing(call, collection_name, method, extra):
    result = call(method, collection_name, *extra)
    assert result.code == "NOT_FOUND"
    assert collection_name in result.body["error"]["message"]
    assert collection_name not in [c.name for c in get_chroma().list_collections()]


@pytest.mark.parametrize(
    "bad_name",
    ["x", "ab", "-starts-with-dash", "has space", "a..b", "192.168.1.1", "é" * 5, "a" * 64, "a/b/c", "abc\n"],
)
def test_invalid_collection_names_are_rejected_before_any_call(call, bad_name):
    assert call("get_collection_info", bad_name).code == "INVALID_ARGS"
    assert call("add_documents", bad_name, ["text"]).code == "INVALID_ARGS"


def test_arguments_are_bounded_and_checked(call, collection_name):
    add_sample(call, collection_name)
    assert call("query_documents", collection_name, ["q"], 0).code == "INVALID_ARGS"
    assert call("query_documents", collection_name, ["q"], 501).code == "INVALID_ARGS"
    assert call("query_documents", collection_name, []).code == "INVALID_ARGS"
    assert call("query_documents", collection_name, ["q"] * 101).code == "INVALID_ARGS"
    assert call("query_documents", collection_name, ["q"], 10, {"$bogus": 1}).code == "INVALID_ARGS"
    assert call("add_documents", collection_name, []).code == "INVALID_ARGS"
    assert call("add_documents", collection_name, ["a", "b"], [{"k": 1}]).code == "INVALID_ARGS"
    assert call("add_documents", collection_name, ["a"], [{"k": {"nested": 1}}]).code == "INVALID_ARGS"
    assert call("add_documents", collection_name, ["a", "b"], kwargs={"ids": ["same", "same"]}).code == "INVALID_ARGS"
    assert call("add_documents", collection_name, ["a"], [{"k": 1}], ["x"], ["extra"]).code == "INVALID_ARGS"
    assert call("get_collection_info", collection_name).data["document_count"] == 4


def test_add_documents_requires_an_idempotency_key(call, collection_name):
    assert call("add_documents", collection_name, ["text"], idempotency_key=None).status == 400


def test_empty_metadata_dicts_are_stored_as_no_metadata(call, collection_name):
    call("add_documents", collection_name, ["a", "b"], [{}, {"k": "v"}], ["a", "b"])
    stored = get_chroma().get_collection(collection_name, embedding_function=None).get(ids=["a", "b"])
    assert dict(zip(stored["ids"], stored["metadatas"], strict=True)) == {"a": None, "b": {"k": "v"}}


def test_large_adds_are_split_by_the_clients_max_batch_size(call, collection_name, monkeypatch):
    from chromadb.api.models.Collection import Collection

    batches: list[int] = []
    real_add = Collection.add

    def add(self, *args, **kwargs):
        batches.append(len(kwargs["ids"]))
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(store, "max_batch_size", lambda: 3)
    monkeypatch.setattr(Collection, "add", add)
    documents = [f"document number {i}" for i in range(8)]
    assert call("add_documents", collection_name, documents).data["documents_added"] == 8
    assert batches == [3, 3, 2]
    assert call("get_collection_info", collection_name).data["document_count"] == 8


def test_a_collection_deleted_behind_the_cache_is_found_missing_then_recreated_on_write(call, collection_name):
    add_sample(call, collection_name)
    get_chroma().delete_collection(collection_name)  # another process, as far as the service's cache knows
    assert call("get_collection_info", collection_name).code == "NOT_FOUND"
    assert call("add_documents", collection_name, ["fresh"], kwargs={"ids": ["fresh"]}).data["documents_added"] == 1
    assert call("get_collection_info", collection_name).data["document_count"] == 1


def test_positional_nulls_mean_the_defaults_as_in_the_original(call, collection_name):
    """The Reflex proxy forwards Python calls positionally, None included: add(name, docs, None, None)."""
    assert call("add_documents", collection_name, ["only text"], None, None).data["documents_added"] == 1
    assert call("query_documents", collection_name, ["text"], 1, None).data["results"]["documents"] == [["only text"]]
