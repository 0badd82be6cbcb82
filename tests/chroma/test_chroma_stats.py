"""``manage.py chroma_stats``: collections, counts and registrations, as a table or JSON."""
from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from core.integrations import chroma as chroma_adapter


def stats_output(*args: str) -> str:
    out = io.StringIO()
    call_command("chroma_stats", *args, stdout=out)
    return out.getvalue()


def test_json_lists_collections_counts_and_registrations(chroma_mode, call):
    call("add_documents", "klk_space_alpha", ["one", "two", "three"])
    call("create_chroma_instance", "klk_space_empty")
    call("register_collection_user", "user-1", "klk_space_alpha", "session-a")
    stats = json.loads(stats_output("--json"))
    assert stats["backend"] == chroma_adapter.describe()
    assert sorted((c["name"], c["document_count"], c["embedding_function"]) for c in stats["collections"]) == [
        ("klk_space_alpha", 3, "bundled_minilm_int8"), ("klk_space_empty", 0, "bundled_minilm_int8"),
    ]
    assert (stats["collection_count"], stats["document_count"], stats["registration_count"]) == (2, 3, 1)
    [registration] = stats["registrations"]
    assert registration["user_id"] == "user-1" and registration["collection_name"] == "klk_space_alpha"
    assert registration["session_id"] == "session-a" and registration["expires_at"].endswith("Z")


def test_table_output_names_everything(chroma_mode, call):
    call("add_documents", "klk_space_alpha", ["one"])
    call("register_collection_user", "user-1", "klk_space_alpha", "session-a")
    text = stats_output()
    assert f"Chroma ({chroma_adapter.describe()['mode']})" in text
    assert "1 collection(s), 1 document(s); 1 live registration(s)" in text
    assert "klk_space_alpha" in text and "bundled_minilm_int8" in text and "session-a" in text


def test_an_unreachable_server_is_a_command_error(settings):
    settings.CHROMA_HOST, settings.CHROMA_PORT = "127.0.0.1", 9  # discard port: nothing listens
    chroma_adapter.reset_clients()
    try:
        with pytest.raises(CommandError, match="UNAVAILABLE"):
            stats_output("--json")
    finally:
        chroma_adapter.reset_clients()


def test_help_describes_the_options():
    from chroma.management.commands.chroma_stats import Command

    text = Command().create_parser("manage.py", "chroma_stats").format_help()
    assert "--json" in text and "--limit" in text
    assert "collection registrations" in text
