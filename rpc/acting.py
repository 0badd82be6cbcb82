"""The acting user of the RPC being executed (the envelope's ``user_id``), for methods whose arguments address the
user's own things by an id that is only unique per user, e.g. ``REGISTRY.heartbeat(session_id)`` (issue 16 rule 6).

Set by the gateway once the envelope is parsed; runs on worker threads inherit it with the rest of the context
(rpc.execution.Run copies the context into the thread).
"""
from __future__ import annotations

from contextvars import ContextVar

acting_user_var: ContextVar[str | None] = ContextVar("rpc_acting_user", default=None)


def acting_user() -> str | None:
    return acting_user_var.get()
