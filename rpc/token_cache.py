"""A short-lived per-process cache of API client token lookups, so /rpc does no SQL per call (issue 21).

Entries live TTL_S (0.5 s): a revocation or rotation made by another process (the admin, a command) is effective
within that, and within the same process at once (``forget_all``, called by the writes in rpc.services). Failed
lookups are cached too, so a flood of bad tokens costs one query per token per TTL_S, not one per request. Keys are
token hashes: no plaintext token is kept.
"""
from __future__ import annotations

import threading
import time
from typing import Any

TTL_S = 0.5
_MAX_ENTRIES = 10_000
MISS = object()

_entries: dict[str, tuple[float, Any]] = {}
_lock = threading.Lock()


def get(token_hash: str) -> Any:
    """The cached principal (or None for a refused token), or MISS."""
    entry = _entries.get(token_hash)
    if entry is None or entry[0] < time.monotonic():
        return MISS
    return entry[1]


def put(token_hash: str, principal: Any) -> None:
    with _lock:
        if len(_entries) >= _MAX_ENTRIES:  # bounded: a flood of distinct bad tokens can't grow the process
            now = time.monotonic()
            for key in [key for key, (expires, _) in _entries.items() if expires < now] or list(_entries):
                del _entries[key]
        _entries[token_hash] = (time.monotonic() + TTL_S, principal)


def forget_all() -> None:
    with _lock:
        _entries.clear()
