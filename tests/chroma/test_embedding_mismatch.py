"""Collections built with another embedding function: reported on add/query, never mixed; still countable."""
from __future__ import annotations

from typing import Any

import pytest
from chromadb.utils.embedding_functions import DefaultEmbeddingFunction

from chroma.embedding import BundledMiniLMEmbeddingFunction, expected_config
from core.integrations.chroma import get_chroma
from core.integrations.firebase import get_firestore

pytestmark = pytest.mark.usefixtures("chroma_mode")


@pytest.fixture(autouse=True)
def company_collection(collection_name: str) -> None:
    """These collections predate the gateway (no recorded owner): user-1 reaches them as one of its companies' spaces
    (chroma/ownership.py)."""
    get_firestore().document("clients/user-1/bo_clients/c1/mandates/m1").set({"contact_space_id": collection_name})


class OtherRevision(BundledMiniLMEmbeddingFunction):
    """Same name, another model file: what an upgraded or swapped model would record (deliberately unregistered)."""

    def get_config(self) -> dict[str, Any]:
        return {**expected_config(), "model_sha256": "f" * 64}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> OtherRevision:
        return OtherRevision()


def _default_function_collection(name: str) -> None:
    """Chroma's default function (it would download a model on first embed; explicit vectors never call it)."""
    collection = get_chroma().create_collection(name, embedding_function=DefaultEmbeddingFunction())
    collection.add(ids=["old"], embeddings=[[0.1] * 384], documents=["legacy document"])


def _no_function_collection(name: str) -> None:
    """Explicit vectors only, e.g. migrated from the original's OpenAI ada-002 collections (1536 dimensions)."""
    collection = get_chroma().create_collection(name, embedding_function=None)
    collection.add(ids=["old"], embeddings=[[0.1] * 1536], documents=["legacy document"], metadatas=[{"k": "v"}])


def _other_revision_collection(name: str) -> None:
    collection = get_chroma().create_collection(name, configuration={"embedding_function": OtherRevision()},
                                                embedding_function=None)
    collection.add(ids=["old"], embeddings=[[0.1] * 384], documents=["legacy document"])


@pytest.mark.parametrize(
    ("make", "recorded"),
    [
        (_default_function_collection, "'default'"),
        (_no_function_collection, "none recorded"),
        (_other_revision_collection, "another model revision"),
    ],
)
def test_embedding_operations_on_a_foreign_collection_are_refused(call, collection_name, make, recorded):
    make(collection_name)
    for result in (
        call("add_documents", collection_name, ["new text"]),
        call("query_documents", collection_name, ["anything"]),
        call("create_chroma_instance", collection_name),
    ):
        assert result.code == "INVALID_ARGS"
        message = result.body["error"]["message"]
        assert collection_name in message and recorded in message and "bundled_minilm_int8" in message
    assert get_chroma().get_collection(collection_name, embedding_function=None).get()["ids"] == ["old"]


def test_a_foreign_collection_can_still_be_counted_analysed_and_cleaned(call, collection_name):
    _no_function_collection(collection_name)
    assert call("get_collection_info", collection_name).data["document_count"] == 1
    analysis = call("analyze_collection", collection_name).data["analysis"]
    assert analysis["embeddings_size"] == 1536 * 4
    assert analysis["documents_size"] == len("legacy document")
    assert analysis["metadata_size"] == len('{"k":"v"}')
    call("delete_documents", collection_name, kwargs={"ids": ["old"]})
    assert call("get_collection_info", collection_name).data["document_count"] == 0


def test_collections_created_by_the_service_record_the_bundled_function(call, collection_name):
    call("create_chroma_instance", collection_name)
    configuration = get_chroma().get_collection(collection_name, embedding_function=None).configuration_json
    assert configuration["embedding_function"] == {
        "type": "known", "name": "bundled_minilm_int8", "config": expected_config(),
    }
    assert configuration["hnsw"]["space"] == "cosine"
