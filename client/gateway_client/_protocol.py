"""What the sync and async clients share: the request envelope, reading a reply, and the retry policy."""
from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import httpx
import tenacity

from .errors import Attempt, GatewayUnreachable, ProtocolError, RpcError, error_from_envelope

API_VERSION = "v1"
# The gateway's own limits (contract §1): default 15 s, at most 120 s.
DEFAULT_TIMEOUT_MS = 15_000
MAX_TIMEOUT_MS = 120_000
# Added to the call's deadline for the HTTP read timeout: the gateway answers TIMEOUT itself at the deadline.
HTTP_TIMEOUT_MARGIN_S = 5.0
# Statuses a proxy or load balancer in front of the gateway answers while it restarts.
_PROXY_UNAVAILABLE = {502, 503, 504}


def new_id() -> str:
    return uuid.uuid4().hex


def build_envelope(
    method: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    user_id: str | None,
    session_id: str | None,
    trace_id: str,
    idempotency_key: str | None,
    timeout_ms: int | None,
) -> dict[str, Any]:
    envelope: dict[str, Any] = {
        "api_version": API_VERSION, "method": method, "args": list(args), "kwargs": dict(kwargs), "trace_id": trace_id,
    }
    optional = {"user_id": user_id, "session_id": session_id, "idempotency_key": idempotency_key,
                "timeout_ms": timeout_ms}
    envelope.update({key: value for key, value in optional.items() if value is not None})
    return envelope


def encode(envelope: dict[str, Any]) -> bytes:
    """JSON body; a value JSON can't carry (a datetime, a set...) fails here, before anything is sent."""
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()


def http_timeout(timeout_ms: int | None) -> httpx.Timeout:
    deadline_s = min(timeout_ms or DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS) / 1000
    return httpx.Timeout(deadline_s + HTTP_TIMEOUT_MARGIN_S, connect=5.0)


@dataclass(frozen=True)
class Reply:
    """A successful call: the result and what is useful to log or test about how it was obtained."""

    data: Any
    trace_id: str  # the gateway's echo of the call's trace id (in its logs and in the events the call caused)
    idempotency_key: str | None
    replayed: bool  # True: the gateway replayed the stored result of an earlier try with the same key
    attempts: tuple[Attempt, ...]  # the failed tries before this answer, oldest first


@dataclass(frozen=True)
class Answer:
    data: Any
    replayed: bool
    trace_id: str | None  # as the gateway echoed it


def parse_reply(response: httpx.Response, *, method: str | None) -> Answer:
    """The result of an ``ok: true`` envelope; raise the typed error otherwise."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "ok" not in body:
        if response.status_code in _PROXY_UNAVAILABLE:
            raise GatewayUnreachable(f"HTTP {response.status_code} from {response.url}", method=method,
                                     http_status=response.status_code)
        raise ProtocolError(f"HTTP {response.status_code} from {response.url} is not a gateway envelope")
    trace_id = body.get("trace_id")
    if body["ok"] is True:
        return Answer(body.get("data"), response.headers.get("idempotent-replayed") == "true", trace_id)
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    raise error_from_envelope(error, method=method, trace_id=trace_id, http_status=response.status_code)


def transport_failure(exc: httpx.TransportError, *, method: str | None) -> GatewayUnreachable:
    # The exception's text can hold the URL; the type name says what happened without it.
    return GatewayUnreachable(f"gateway unreachable ({type(exc).__name__})", method=method)


# --- retries ---------------------------------------------------------------------------------------------------------
RETRYABLE_CODES = frozenset({"IDEMPOTENCY_CONFLICT", "TIMEOUT", "UNAVAILABLE"})
_STILL_RUNNING = "IDEMPOTENCY_CONFLICT"


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to retry. Every retry reuses the call's idempotency key and trace id.

    The wait is the gateway's ``retry_after_ms`` when it gives one (``TIMEOUT``, ``UNAVAILABLE``), else exponential
    backoff with jitter (an unreachable gateway). A 409 ``IDEMPOTENCY_CONFLICT`` means the call is running (a slow
    write, or the run a ``TIMEOUT`` left behind): it is polled until ``max_elapsed_s`` without counting toward
    ``max_attempts``, after ``retry_after_ms`` or the backoff delay, whichever is longer. ``INTERNAL`` is not retried
    by default: the gateway releases the key so a retry would run again, but a bug usually fails the same way twice;
    add it to ``retry_codes`` to change that.
    """

    max_attempts: int = 6
    max_elapsed_s: float = 60.0
    retry_codes: frozenset[str] = field(default=RETRYABLE_CODES)
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 5.0

    def should_retry(self, exc: BaseException) -> bool:
        return isinstance(exc, RpcError) and exc.code in self.retry_codes

    def wait_s(self, exc: BaseException | None, attempt_number: int) -> float:
        ceiling = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (attempt_number - 1))
        backoff = random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security
        if not isinstance(exc, RpcError) or exc.retry_after_ms is None:
            return backoff
        if exc.code == _STILL_RUNNING:
            # The gateway's short poll delay is the minimum; a long write is polled less and less often.
            return max(exc.retry_after_ms / 1000, backoff)
        return exc.retry_after_ms / 1000

    def tenacity_options(self, attempts: list[Attempt]) -> dict[str, Any]:
        """Arguments for ``tenacity.Retrying`` / ``AsyncRetrying``; failed tries are appended to ``attempts``."""

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return self.wait_s(exc, state.attempt_number)

        def record(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, RpcError):
                attempts.append(Attempt(exc.code, exc.retry_after_ms, state.upcoming_sleep))

        def out_of_attempts(state: tenacity.RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome else None
            current = not isinstance(exc, RpcError) or exc.code != _STILL_RUNNING
            return sum(a.code != _STILL_RUNNING for a in attempts) + current >= self.max_attempts

        return {
            "stop": tenacity.stop_any(out_of_attempts, tenacity.stop_before_delay(self.max_elapsed_s)),
            "wait": wait,
            "retry": tenacity.retry_if_exception(self.should_retry),
            "before_sleep": record,
            "reraise": True,
        }


NO_RETRY = RetryPolicy(max_attempts=1)
