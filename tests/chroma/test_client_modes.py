"""Client modes: which client each mode builds, bounded HTTP timeouts, an unreachable server, no network at all."""
from __future__ import annotations

import socket

import pytest

from chroma import store
from core.integrations import chroma as chroma_adapter
from tests.chroma.conftest import OutboundConnectionAttempt


def test_each_mode_talks_to_the_client_it_names(chroma_mode, chroma_server, settings):
    client = chroma_adapter.get_chroma()
    described = chroma_adapter.describe()
    if chroma_mode == "server":
        assert described == {"mode": "http", "url": f"http://127.0.0.1:{chroma_server.port}"}
        assert type(client._server).__name__ == "FastAPI"  # chromadb's HTTP client class
    else:
        assert described == {"mode": "embedded", "path": settings.CHROMA_PATH}
        assert type(client._server).__name__ == "RustBindingsAPI"
    assert chroma_adapter.ping() is True


def test_http_client_has_bounded_timeouts(server_mode):
    timeout = chroma_adapter.get_chroma()._server._session.timeout
    expected = (chroma_adapter.HTTP_CONNECT_TIMEOUT_S, chroma_adapter.HTTP_READ_TIMEOUT_S)
    assert (timeout.connect, timeout.read) == expected


@pytest.fixture
def server_mode(chroma_server, settings):
    settings.CHROMA_HOST, settings.CHROMA_PORT = "127.0.0.1", chroma_server.port
    chroma_adapter.reset_clients()
    store.forget_cached_collections()
    yield chroma_server
    if not chroma_server.process.alive():
        chroma_server.process.start()
    chroma_adapter.reset_clients()
    store.forget_cached_collections()


def test_an_unreachable_server_is_unavailable_and_recovers(server_mode, call, collection_name):
    assert call("create_chroma_instance", collection_name).data["success"] is True
    server_mode.process.stop()
    try:
        down = call("get_collection_info", collection_name)  # the client exists: its request fails
        assert down.code == "UNAVAILABLE" and down.body["error"]["retry_after_ms"] > 0
        chroma_adapter.reset_clients()  # a fresh process: building the client itself fails
        assert call("query_documents", collection_name, ["q"]).code == "UNAVAILABLE"
        assert chroma_adapter.ping() is False
    finally:
        server_mode.process.start()
    assert call("get_collection_info", collection_name).data["document_count"] == 0  # the data survived


def test_the_network_guard_catches_outbound_attempts(no_outbound_network):
    with pytest.raises(OutboundConnectionAttempt):
        socket.create_connection(("192.0.2.1", 80), timeout=0.1)  # TEST-NET-1, never routed
    with pytest.raises(OutboundConnectionAttempt):
        socket.getaddrinfo("chroma-onnx-models.s3.amazonaws.com", 443)
    assert no_outbound_network.attempts == ["192.0.2.1", "chroma-onnx-models.s3.amazonaws.com"]
    no_outbound_network.attempts.clear()  # seen; the fixture's own teardown check stays for every other test


def test_no_chroma_default_model_is_ever_fetched(chroma_mode, call, collection_name):
    from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

    call("add_documents", collection_name, ["a document"])
    call("query_documents", collection_name, ["a query"])
    assert not (ONNXMiniLM_L6_V2.DOWNLOAD_PATH / ONNXMiniLM_L6_V2.EXTRACTED_FOLDER_NAME / "model.onnx").exists()
