"""Collections as this service sees them.

* Names are validated (Chroma's rules, capped at 63 characters as in Chroma 0.4 that the Reflex app grew up with).
* Reads never create: a missing collection is ``NOT_FOUND`` (the original created one on every read or analysis).
* Text is embedded only into/against collections that record our embedding function; any other is reported, never
  mixed. Counting, analysing and deleting don't embed, so they work on any collection (e.g. one migrated from the
  original's OpenAI-embedded Chroma, which the storage widget can still size).
* Handles are cached (bounded LRU, per client) so a query costs one round trip; a handle whose collection was
  deleted or recreated elsewhere fails with Chroma's NotFoundError, is dropped, and resolved again once; one
  renamed elsewhere (a migration's swap) is noticed when it reaches HANDLE_MAX_AGE_S.
* Chroma's failures become typed RPC errors. chromadb is imported lazily: most processes (manage.py commands,
  the listeners worker) never touch it, and importing it costs ~0.4 s.
"""
from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from core.integrations.chroma import ChromaUnavailable, get_chroma
from core.errors import InvalidArgs, NotFound, PermissionDenied, Unavailable

from . import ownership
from .errors import EmbeddingFunctionMismatch

log = structlog.get_logger(__name__)

T = TypeVar("T")

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]")  # always fullmatch: "$" would allow "\n"
_IPV4_RE = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_HANDLE_CACHE_SIZE = 256
# A migration (chroma/migration.py) renames collections in another process; a handle keeps the id it was resolved
# to, so without an age limit this process would keep reading (and deleting from) NAME__pre_migration.
HANDLE_MAX_AGE_S = 30.0


@dataclass(frozen=True)
class CollectionNameRule:
    """RPC argument rule (an ``Annotated`` marker checked by rpc.types before the call)."""

    def check(self, name: str, value: str) -> None:
        if not _NAME_RE.fullmatch(value) or ".." in value or _IPV4_RE.fullmatch(value):
            raise InvalidArgs(
                f"{name} must be 3-63 characters of letters, digits, '.', '_' or '-', starting and ending with a "
                "letter or digit, without '..'"
            )




def validate_collection_name(collection_name: str) -> None:
    CollectionNameRule().check("collection_name", collection_name)


@contextmanager
def translate_chroma_errors(collection_name: str) -> Iterator[None]:
    """Chroma's exceptions as the contract's codes (their text goes to the log, never to the caller)."""
    import httpx
    from chromadb.errors import InvalidArgumentError, NotFoundError

    try:
        yield
    except NotFoundError:
        raise NotFound(f"collection {collection_name!r} does not exist") from None
    except InvalidArgumentError as exc:
        # What Chroma's engine refuses beyond the client-side checks (e.g. an operator on the wrong value type).
        log.info("chroma_error", collection=collection_name, reason="invalid_argument", exc_info=exc)
        raise InvalidArgs("Chroma rejected the arguments (check the where filter and the metadata values)") from None
    except (httpx.TransportError, ChromaUnavailable) as exc:
        log.warning("chroma_error", collection=collection_name, reason="unreachable", exc_info=exc)
        raise Unavailable("Chroma is unreachable; retry later") from None


class _HandleCache:
    """(name, checked) -> Collection handle for the current client; a new client (settings changed) starts empty.
    Handles older than HANDLE_MAX_AGE_S are resolved again (one round trip per collection and interval).

    ``checked`` handles carry our embedding function and passed :func:`check_embedding_function`; unchecked ones
    (counts, analyses, deletes: nothing is embedded) work on any collection.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._client: Any = None
        self._handles: OrderedDict[tuple[str, bool], tuple[Any, float]] = OrderedDict()

    def get(self, client: Any, key: tuple[str, bool]) -> Any:
        with self._lock:
            if client is not self._client:
                return None
            entry = self._handles.get(key)
            if entry is None:
                return None
            handle, resolved_at = entry
            if time.monotonic() - resolved_at > HANDLE_MAX_AGE_S:
                del self._handles[key]
                return None
            self._handles.move_to_end(key)
            return handle

    def put(self, client: Any, key: tuple[str, bool], handle: Any) -> Any:
        with self._lock:
            if client is not self._client:
                self._client, self._handles = client, OrderedDict()
            self._handles[key] = (handle, time.monotonic())
            self._handles.move_to_end(key)
            while len(self._handles) > self._size:
                self._handles.popitem(last=False)
        return handle

    def forget(self, name: str | None = None) -> None:
        with self._lock:
            if name is None:
                self._handles.clear()
            else:
                self._handles.pop((name, True), None)
                self._handles.pop((name, False), None)


_handles = _HandleCache(_HANDLE_CACHE_SIZE)


def forget_cached_collections() -> None:
    _handles.forget()


def check_embedding_function(collection_name: str, recorded: dict[str, Any] | None) -> None:
    """Raise unless the collection's persisted configuration names our function and our model revision."""
    from .embedding import EMBEDDING_FUNCTION_NAME, MODEL_SHA256

    if not recorded or recorded.get("type") != "known":
        # Chroma records {"type": "legacy"} (or nothing) for explicit vectors and pre-1.0 collections.
        raise EmbeddingFunctionMismatch(collection_name, "none recorded (vectors of unknown origin)")
    name = recorded.get("name") or "unknown"
    if name != EMBEDDING_FUNCTION_NAME:
        raise EmbeddingFunctionMismatch(collection_name, repr(name))
    if (recorded.get("config") or {}).get("model_sha256") != MODEL_SHA256:
        raise EmbeddingFunctionMismatch(collection_name, f"{name!r} with another model revision")


def _resolve(client: Any, collection_name: str, *, create: bool, embeds: bool, owner: str | None) -> Any:
    from chromadb.errors import NotFoundError

    from .embedding import get_embedding_function

    embedding_function = get_embedding_function()
    if create:
        if owner is None:
            raise PermissionDenied("creating a collection needs the acting user (its owner)")
        try:
            raw = client.get_collection(collection_name, embedding_function=None)
        except NotFoundError:
            ownership.require_creatable(owner, collection_name)
            # Passing the function in the configuration (not as embedding_function) keeps Chroma's own conflict
            # check, which only compares names, out of the way: check_embedding_function compares the revision too.
            raw = client.get_or_create_collection(
                collection_name, embedding_function=None, configuration={"embedding_function": embedding_function},
                metadata=ownership.owner_metadata(owner),
            )
        # Existing, or created by someone else between the two calls: Chroma kept its metadata, so this is exact.
        ownership.require_access(owner, collection_name, raw.metadata)
    else:
        try:
            raw = client.get_collection(collection_name, embedding_function=None)
        except NotFoundError:
            raise NotFound(f"collection {collection_name!r} does not exist") from None
    if not (create or embeds):
        return raw
    check_embedding_function(collection_name, raw.configuration_json.get("embedding_function"))
    return client.get_collection(collection_name, embedding_function=embedding_function)


def with_collection(
    collection_name: str, operation: Callable[[Any], T], *, embeds: bool, create: bool = False,
    owner: str | None = None,
) -> T:
    """Run ``operation(collection)``.

    ``embeds``: the operation embeds text (add, query), so the collection must record our embedding function.
    ``create``: a missing collection is created (write paths only), owned by ``owner``; implies ``embeds``. Who may
    use an existing collection is checked before the call (``collection_owner``, the registry's ``Owned`` check)
    and, when creating, here again on the collection Chroma returns.
    """
    from chromadb.errors import NotFoundError

    validate_collection_name(collection_name)
    key = (collection_name, embeds or create)
    with translate_chroma_errors(collection_name):
        client = get_chroma()
        handle = _handles.get(client, key)
        if handle is not None:
            try:
                return operation(handle)
            except NotFoundError:
                # Deleted (or deleted and recreated) behind our back: the cached id is gone. Resolve once more.
                _handles.forget(collection_name)
        handle = _resolve(client, collection_name, create=create, embeds=embeds, owner=owner)
        return operation(_handles.put(client, key, handle))


def require_collection_access(acting_user: str, collection_name: str) -> None:
    """The registry's scope check of a collection argument (``chroma.rpc_methods.OwnCollection``): an existing
    collection must be the acting user's (``ownership.require_access``). A missing one passes: reads answer
    NOT_FOUND themselves, and creating checks ``ownership.require_creatable``."""
    from chromadb.errors import NotFoundError

    validate_collection_name(collection_name)
    with translate_chroma_errors(collection_name):
        client = get_chroma()
        handle = _handles.get(client, (collection_name, False)) or _handles.get(client, (collection_name, True))
        if handle is None:
            try:
                raw = client.get_collection(collection_name, embedding_function=None)
            except NotFoundError:
                return
            handle = _handles.put(client, (collection_name, False), raw)
    ownership.require_access(acting_user, collection_name, handle.metadata)


def max_batch_size() -> int | None:
    """The most records one add may carry (5,461 locally), or None when the server doesn't say."""
    with translate_chroma_errors("-"):
        size = int(get_chroma().get_max_batch_size())
    return size if size > 0 else None


@dataclass(frozen=True)
class CollectionSummary:
    name: str
    id: str
    document_count: int
    embedding_function: str  # the name the collection records, "" when none


def list_collection_summaries(*, limit: int = 1000) -> list[CollectionSummary]:
    """Every collection of the configured tenant/database, including ones this service would refuse to serve."""
    with translate_chroma_errors("-"):
        summaries = []
        for collection in get_chroma().list_collections(limit=limit):
            recorded = collection.configuration_json.get("embedding_function") or {}
            summaries.append(
                CollectionSummary(
                    name=collection.name, id=str(collection.id), document_count=collection.count(),
                    embedding_function=str(recorded.get("name") or recorded.get("type") or ""),
                )
            )
        return summaries
