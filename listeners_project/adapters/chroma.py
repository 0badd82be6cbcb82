"""Chroma: embedded ``PersistentClient`` at ``CHROMA_PATH``, or ``HttpClient`` when ``CHROMA_HOST`` is set."""
from __future__ import annotations

import threading
from typing import Any

from django.conf import settings

_lock = threading.Lock()
_client: Any = None


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
        return chromadb.HttpClient(
            host=settings.CHROMA_HOST,
            port=settings.CHROMA_PORT,
            ssl=settings.CHROMA_SSL,
            headers=headers or None,
            tenant=settings.CHROMA_TENANT,
            database=settings.CHROMA_DATABASE,
            settings=_chroma_settings(),
        )
    return chromadb.PersistentClient(
        path=settings.CHROMA_PATH,
        tenant=settings.CHROMA_TENANT,
        database=settings.CHROMA_DATABASE,
        settings=_chroma_settings(),
    )


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
