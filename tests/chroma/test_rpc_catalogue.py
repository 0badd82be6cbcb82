"""CHROMA_VECTOR.* in the method catalogue: every original method, with the right write flags and scoping."""
from __future__ import annotations

from django.test import Client

WRITES = {
    "register_collection_user": True, "heartbeat_collection": True, "unregister_collection_user": True,
    "create_chroma_instance": True, "create_analyzer_instance": False, "add_documents": True,
    "query_documents": False, "delete_documents": True, "get_collection_info": False, "analyze_collection": False,
    "analyze_storage_full": False, "generate_report": False, "migrate_collection": True,
}


def test_every_original_method_is_listed_with_docs_and_write_flags(service_token):
    response = Client().get("/rpc/methods", HTTP_AUTHORIZATION=f"Bearer {service_token}")
    methods = {m["method"]: m for m in response.json()["data"]["methods"] if m["method"].startswith("CHROMA_VECTOR.")}
    assert {name.removeprefix("CHROMA_VECTOR."): m["writes"] for name, m in methods.items()} == WRITES
    assert all(m["doc"] for m in methods.values())
    for name in ("register_collection_user", "heartbeat_collection", "unregister_collection_user", "migrate_collection"):
        assert methods[f"CHROMA_VECTOR.{name}"]["scoped_by"] == ["user_id"]
    assert [p["name"] for p in methods["CHROMA_VECTOR.add_documents"]["params"]] == [
        "collection_name", "documents", "metadatas", "ids",
    ]
    assert [p["name"] for p in methods["CHROMA_VECTOR.query_documents"]["params"]] == [
        "collection_name", "query_texts", "n_results", "where",
    ]
