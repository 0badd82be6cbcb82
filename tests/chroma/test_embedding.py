"""The bundled embedding function: pinned files, vectors, registration with Chroma, one model per process."""
from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest

from chroma import embedding
from chroma.embedding import (
    DIMENSION,
    EMBEDDING_FUNCTION_NAME,
    BundledMiniLMEmbeddingFunction,
    ModelIntegrityError,
    embed,
    expected_config,
    get_embedding_function,
)


def test_vectors_are_unit_length_384_floats_and_similar_sentences_are_close():
    cat, feline, stocks = embed(["The cat sits on the mat.", "A feline is resting on a rug.", "Stock markets fell."])
    assert cat.shape == (DIMENSION,) and cat.dtype == np.float32
    assert np.allclose([np.linalg.norm(v) for v in (cat, feline, stocks)], 1.0, atol=1e-5)
    assert float(cat @ feline) > 0.5 > 0.1 > float(cat @ stocks)


def test_batching_keeps_input_order_and_matches_one_at_a_time(monkeypatch):
    monkeypatch.setattr(embedding, "_MINI_BATCH", 2)  # several mini-batches, sorted by length internally
    texts = ["a much longer sentence about accounting and invoices and taxes", "short", "mid length text", "x"]
    together = embed(texts)
    alone = np.stack([embed([text])[0] for text in texts])
    assert np.allclose(together, alone, atol=1e-5)


def test_empty_input_gives_no_vectors():
    assert embed([]).shape == (0, DIMENSION)


def test_long_documents_are_truncated_not_refused():
    assert embed(["word " * 2000])[0].shape == (DIMENSION,)


def test_the_model_is_loaded_once_per_process_even_under_concurrency(monkeypatch):
    monkeypatch.setattr(embedding, "_model", None)
    loads = []
    real_load = embedding._load

    def counting_load():
        loads.append(1)
        return real_load()

    monkeypatch.setattr(embedding, "_load", counting_load)
    barrier = threading.Barrier(4)
    seen = []

    def worker():
        barrier.wait()
        seen.append(embedding.loaded_model())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loads) == 1 and len({id(model) for model in seen}) == 1


def test_a_tampered_tokenizer_is_refused(monkeypatch, tmp_path):
    tampered = tmp_path / "tokenizer.json"
    shutil.copy(embedding.TOKENIZER_PATH, tampered)
    with tampered.open("a") as handle:
        handle.write(" ")
    monkeypatch.setattr(embedding, "TOKENIZER_PATH", tampered)
    with pytest.raises(ModelIntegrityError, match="sha256"):
        embedding._load()


def test_a_different_model_file_is_refused(monkeypatch):
    monkeypatch.setattr(embedding, "MODEL_SHA256", "0" * 64)
    with pytest.raises(ModelIntegrityError, match="sha256"):
        embedding._load()


def test_a_missing_model_file_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(embedding, "model_file", lambda: tmp_path / "absent.onnx")
    with pytest.raises(ModelIntegrityError, match="missing"):
        embedding._load()


def test_registered_with_chroma_and_rebuilt_from_its_config():
    from chromadb.utils.embedding_functions import known_embedding_functions

    function = get_embedding_function()
    assert known_embedding_functions[EMBEDDING_FUNCTION_NAME] is BundledMiniLMEmbeddingFunction
    assert function.name() == EMBEDDING_FUNCTION_NAME and function.default_space() == "cosine"
    assert function.get_config() == expected_config()
    assert not function.is_legacy()
    rebuilt = BundledMiniLMEmbeddingFunction.build_from_config(function.get_config())
    assert np.allclose(rebuilt(["same text"])[0], function(["same text"])[0])


def test_a_config_from_another_model_revision_is_refused():
    with pytest.raises(ValueError, match="another model revision"):
        BundledMiniLMEmbeddingFunction.build_from_config({**expected_config(), "model_sha256": "f" * 64})
