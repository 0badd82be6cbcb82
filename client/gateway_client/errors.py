"""Typed exceptions: one class per error code of the gateway's RPC contract, plus the client's own failures.

Catch ``RpcError`` for anything the gateway answered, ``Unavailable`` for "try later" (it also covers a gateway that
could not be reached at all), ``GatewayError`` for everything this package raises.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class GatewayError(Exception):
    """Base class of every exception raised by gateway_client."""


@dataclass(frozen=True)
class Attempt:
    """One failed try of a call that was retried: what the gateway said and how long the client waited after it."""

    code: str
    retry_after_ms: int | None
    waited_s: float


class RpcError(GatewayError):
    """An ``{"ok": false, "error": {...}}`` answer (or, for subclasses marked below, the client's equivalent)."""

    code = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        trace_id: str | None = None,
        retry_after_ms: int | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.trace_id = trace_id
        self.retry_after_ms = retry_after_ms
        self.http_status = http_status
        # Filled in when the error ends a retried call: every earlier failed try, oldest first.
        self.attempts: tuple[Attempt, ...] = ()

    def __str__(self) -> str:
        where = f" ({self.method})" if self.method else ""
        trace = f" [trace_id {self.trace_id}]" if self.trace_id else ""
        return f"{self.code}{where}: {self.message}{trace}"


class Unauthenticated(RpcError):
    code = "UNAUTHENTICATED"


class PermissionDenied(RpcError):
    code = "PERMISSION_DENIED"


class InvalidRequest(RpcError):
    code = "INVALID_REQUEST"


class InvalidApiVersion(RpcError):
    code = "INVALID_API_VERSION"


class MethodNotFound(RpcError):
    code = "METHOD_NOT_FOUND"


class UnknownMethod(MethodNotFound, AttributeError):
    """Raised by the client before any call: the gateway's catalogue (GET /rpc/methods) does not list the method.

    Also an ``AttributeError``, so ``hasattr(proxy, "name")`` and ``getattr(proxy, "name", None)`` behave.
    """


class InvalidArgs(RpcError):
    code = "INVALID_ARGS"


class NotFound(RpcError):
    code = "NOT_FOUND"


class IdempotencyConflict(RpcError):
    code = "IDEMPOTENCY_CONFLICT"


class IdempotencyMismatch(RpcError):
    code = "IDEMPOTENCY_MISMATCH"


class RpcTimeout(RpcError):
    """``TIMEOUT``: the deadline passed. A write keeps running on the gateway; retrying with the same idempotency
    key (what the client does) returns its result."""

    code = "TIMEOUT"


class Unavailable(RpcError):
    code = "UNAVAILABLE"


class GatewayUnreachable(Unavailable):
    """The gateway could not be reached or answered something other than the contract's envelope (connection
    refused or reset, network timeout, a 502/503/504 from a proxy in front of it)."""


class Internal(RpcError):
    code = "INTERNAL"


class ProtocolError(GatewayError):
    """The gateway answered, but not with a contract envelope (wrong URL, or an incompatible server)."""


class ConsumerRefused(GatewayError):
    """The WebSocket was refused for a reason a reconnect cannot fix (4400 bad request, 4401 unauthenticated,
    4403 forbidden)."""

    def __init__(self, close_code: int, reason: str = "") -> None:
        super().__init__(f"/ws refused with close code {close_code}{': ' + reason if reason else ''}")
        self.close_code = close_code
        self.reason = reason


_BY_CODE: dict[str, type[RpcError]] = {
    cls.code: cls
    for cls in (
        Unauthenticated, PermissionDenied, InvalidRequest, InvalidApiVersion, MethodNotFound, InvalidArgs, NotFound,
        IdempotencyConflict, IdempotencyMismatch, RpcTimeout, Unavailable, Internal,
    )
}


def error_from_envelope(
    error: dict[str, Any], *, method: str | None, trace_id: str | None, http_status: int
) -> RpcError:
    """The typed exception for an envelope's ``error`` object; an unknown code (a newer gateway) is a plain RpcError
    carrying that code."""
    code = str(error.get("code") or "INTERNAL")
    message = str(error.get("message") or code.lower())
    retry_after_ms = error.get("retry_after_ms")
    if not isinstance(retry_after_ms, int) or isinstance(retry_after_ms, bool):
        retry_after_ms = None
    cls = _BY_CODE.get(code, RpcError)
    exc = cls(message, method=method, trace_id=trace_id, retry_after_ms=retry_after_ms, http_status=http_status)
    exc.code = code  # a code this client does not know yet keeps its name on a plain RpcError
    return exc
