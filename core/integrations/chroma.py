"""Chroma: embedded ``PersistentClient`` at ``CHROMA_PATH``, or ``HttpClient`` when ``CHROMA_HOST`` is set.

Embedded mode keeps the data in this process: run one gateway process per ``CHROMA_PATH`` (use server mode when
several processes need the same collections).
"""
from __future__ import annotations

import threading
from typing import Any

from django.conf import settings

# chromadb's HTTP client is built with ``httpx.Client(timeout=None)``: a hung server would hold an RPC worker thread
# forever. Connect fast-fail, and a read ceiling at the RPC's own maximum deadline.
HTTP_CONNECT_TIMEOUT_S = 2.0
HTTP_READ_TIMEOUT_S = 120.0

_lock = threading.Lock()
_client: Any = None


class ChromaUnavailable(ConnectionError):
    """The Chroma server (or its tenant/database) could not be reached; the RPC layer reports UNAVAILABLE."""


def _chroma_settings() -> Any:
    from chromadb.config import Settings

    # Telemetry would try to reach the network; there is none, and a service must not phone home anyway.
    return Settings(anonymized_telemetry=False, allow_reset=False)


def _build_client() -> Any:
    import chromadb

    if settings.CHROMA_HOST:
        headers: dict[str, str] = {}
        if settings.CHROMA_AUTH_HEADER and ":" in settings.CHROMA_AUTH_HEADER:
            name, value = settings.CHROMA_AUTH_HEADER.split(":", 1)
            headers[name.strip()] = value.strip()
        try:
            client = chromadb.HttpClient(
                host=settings.CHROMA_HOST,
                port=settings.CHROMA_PORT,
                ssl=settings.CHROMA_SSL,
                headers=headers or None,
                tenant=settings.CHROMA_TENANT,
                database=settings.CHROMA_DATABASE,
                settings=_chroma_settings(),
            )
        except ValueError as exc:
            # The constructor checks the tenant and database over HTTP and turns every failure into ValueError
            # ("Could not connect to a Chroma server", "Could not connect to tenant ..."): all mean unreachable.
            raise ChromaUnavailable(str(exc)) from exc
        _bound_http_timeouts(client)
        return client
    return chromadb.PersistentClient(
        path=settings.CHROMA_PATH,
        tenant=settings.CHROMA_TENANT,
        database=settings.CHROMA_DATABASE,
        settings=_chroma_settings(),
    )


def _bound_http_timeouts(client: Any) -> None:
    import httpx

    session = getattr(getattr(client, "_server", None), "_session", None)  # chromadb==1.5.9 internals (pinned)
    if not isinstance(session, httpx.Client):
        raise RuntimeError("chromadb's HTTP client changed shape; update _bound_http_timeouts for this version")
    session.timeout = httpx.Timeout(HTTP_READ_TIMEOUT_S, connect=HTTP_CONNECT_TIMEOUT_S)


def get_chroma() -> Any:
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                _client = _build_client()
    return _client


def describe() -> dict[str, str]:
    if settings.CHROMA_HOST:
        scheme = "https" if settings.CHROMA_SSL else "http"
        return {"mode": "http", "url": f"{scheme}://{settings.CHROMA_HOST}:{settings.CHROMA_PORT}"}
    return {"mode": "embedded", "path": settings.CHROMA_PATH}


def ping() -> bool:
    try:
        get_chroma().heartbeat()
        return True
    except Exception:  # noqa: BLE001 - chromadb raises many unrelated types for "unreachable"; health only
        return False


def reset_clients() -> None:
    global _client
    with _lock:
        _client = None
