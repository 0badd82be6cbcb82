"""The acting user of the RPC being executed (the envelope's ``user_id``), for methods whose arguments address the
user's own things by an id that is only unique per user, e.g. ``REGISTRY.heartbeat(session_id)`` or a Chroma
collection (README, Security).

One context variable for the whole service, ``core.tenancy.acting_user_var`` (Chroma, below ``rpc``, reads it too). Set
by the gateway once the envelope is parsed; runs on worker threads inherit it with the rest of the context
(rpc.execution.Run copies the context into the thread).
"""
from __future__ import annotations

from core.tenancy import acting_user_var

__all__ = ["acting_user", "acting_user_var"]


def acting_user() -> str | None:
    return acting_user_var.get()
