"""Typed RPC errors: the only way a failure reaches a caller.

Business code raises these with a message written for the caller. Anything else that escapes a method becomes
``INTERNAL`` with a generic message and the trace id; its text and stack go to the log only.
"""
from __future__ import annotations


class RpcError(Exception):
    code = "INTERNAL"
    http_status = 200
    retryable = False
    default_message = "internal error"
    default_retry_after_ms: int | None = None

    def __init__(self, message: str | None = None, *, retry_after_ms: int | None = None) -> None:
        self.message = message or self.default_message
        self.retry_after_ms = retry_after_ms if retry_after_ms is not None else self.default_retry_after_ms
        super().__init__(self.message)

    def as_dict(self) -> dict[str, object]:
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.retry_after_ms is not None:
            error["retry_after_ms"] = self.retry_after_ms
        return error


class Unauthenticated(RpcError):
    code, http_status, default_message = "UNAUTHENTICATED", 401, "missing or invalid bearer token"


class PermissionDenied(RpcError):
    code, http_status, default_message = "PERMISSION_DENIED", 403, "permission denied"


class InvalidRequest(RpcError):
    code, http_status, default_message = "INVALID_REQUEST", 400, "invalid request"


class PayloadTooLarge(InvalidRequest):
    http_status = 413
    default_message = "request body too large"


class InvalidApiVersion(RpcError):
    code, http_status, default_message = "INVALID_API_VERSION", 400, "unsupported api_version"


class MethodNotFound(RpcError):
    code, default_message = "METHOD_NOT_FOUND", "method not found"


class InvalidArgs(RpcError):
    code, default_message = "INVALID_ARGS", "invalid arguments"


class NotFound(RpcError):
    code, default_message = "NOT_FOUND", "not found"


class IdempotencyConflict(RpcError):
    code, http_status, default_message = "IDEMPOTENCY_CONFLICT", 409, "a call with this idempotency_key is in flight"
    retryable, default_retry_after_ms = True, 200


class IdempotencyMismatch(RpcError):
    code, http_status = "IDEMPOTENCY_MISMATCH", 422
    default_message = "idempotency_key was used with a different method or arguments"


class Timeout(RpcError):
    code, default_message = "TIMEOUT", "deadline exceeded; retry with the same idempotency_key for the result"
    retryable, default_retry_after_ms = True, 1000


class Unavailable(RpcError):
    code, default_message = "UNAVAILABLE", "a backing service is unavailable"
    retryable, default_retry_after_ms = True, 1000


class Internal(RpcError):
    code, retryable = "INTERNAL", True
