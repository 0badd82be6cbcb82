"""``POST /rpc`` and ``GET /rpc/methods``: thin views over the registry, idempotency and execution modules."""
from __future__ import annotations

import json
import threading
from typing import Any

import structlog
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.views import APIView

from listeners_project.adapters.redis import get_redis
from listeners_project.logging import new_trace_id, trace_id_var

from . import idempotency
from .auth import Principal, authenticate, bearer_token
from .envelope import RpcEnvelopeSerializer, RpcResponseSerializer, describe_errors
from .errors import Internal, InvalidApiVersion, InvalidRequest, PayloadTooLarge, RpcError, Timeout
from .execution import Execution
from .registry import MethodSpec, all_methods, resolve
from .serialization import dumps

log = structlog.get_logger("rpc")


def render(*, result: Any = None, error: RpcError | None = None, trace_id: str) -> tuple[bytes, RpcError | None]:
    """The response body, and the error it carries (a result that can't be serialised becomes INTERNAL)."""
    if error is None:
        try:
            return dumps({"ok": True, "data": result, "trace_id": trace_id}), None
        except (TypeError, ValueError):
            log.error("rpc_result_not_serialisable", exc_info=True)
            error = Internal()
    return dumps({"ok": False, "error": error.as_dict(), "trace_id": trace_id}), error


def envelope_bytes(*, result: Any = None, error: RpcError | None = None, trace_id: str) -> bytes:
    return render(result=result, error=error, trace_id=trace_id)[0]


def _response(status: int, body: bytes, *, replayed: bool = False) -> HttpResponse:
    response = HttpResponse(body, status=status, content_type="application/json")
    if replayed:
        response["Idempotent-Replayed"] = "true"
    return response


def _publish_reply(channel: str | None, body: bytes) -> None:
    if not channel:
        return
    try:
        get_redis().publish(channel, body)
    except Exception:  # noqa: BLE001 - the caller still has its HTTP answer; the failure is logged, not hidden
        log.warning("rpc_reply_to_publish_failed", channel=channel, exc_info=True)


class RpcView(APIView):
    """Every backend operation of the Reflex app: one envelope in, one envelope out (contract §1)."""

    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(
        request=RpcEnvelopeSerializer,
        responses={
            200: RpcResponseSerializer,
            400: OpenApiResponse(RpcResponseSerializer, description="INVALID_REQUEST / INVALID_API_VERSION"),
            401: OpenApiResponse(RpcResponseSerializer, description="UNAUTHENTICATED"),
            403: OpenApiResponse(RpcResponseSerializer, description="PERMISSION_DENIED"),
            409: OpenApiResponse(RpcResponseSerializer, description="IDEMPOTENCY_CONFLICT"),
            413: OpenApiResponse(RpcResponseSerializer, description="body over RPC_MAX_BODY_BYTES"),
            422: OpenApiResponse(RpcResponseSerializer, description="IDEMPOTENCY_MISMATCH"),
        },
        description="Calls one registered method; the catalogue is GET /rpc/methods.",
    )
    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        trace_id = trace_id_var.get() or new_trace_id()
        reply_to: str | None = None
        try:
            principal = authenticate(bearer_token(request.META.get("HTTP_AUTHORIZATION")))
            envelope = self._parse(request)
            trace_id = envelope["trace_id"] or trace_id
            trace_id_var.set(trace_id)
            structlog.contextvars.bind_contextvars(method=envelope["method"], uid=envelope["user_id"])
            reply_to = envelope["reply_to"]
            return self._call(principal, envelope, trace_id)
        except RpcError as error:
            if error.http_status >= 500 or error.code == "INTERNAL":
                log.error("rpc_error", code=error.code)
            else:
                log.info("rpc_rejected", code=error.code, reason=error.message)
            body = envelope_bytes(error=error, trace_id=trace_id)
            _publish_reply(reply_to, body)
            return _response(error.http_status, body)
        finally:
            structlog.contextvars.unbind_contextvars("method", "uid")

    def _parse(self, request: HttpRequest) -> dict[str, Any]:
        declared = request.META.get("CONTENT_LENGTH") or "0"
        if declared.isdigit() and int(declared) > settings.RPC_MAX_BODY_BYTES:
            raise PayloadTooLarge()
        raw = request.body
        if len(raw) > settings.RPC_MAX_BODY_BYTES:
            raise PayloadTooLarge()
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise InvalidRequest("body is not valid JSON") from None
        if not isinstance(data, dict):
            raise InvalidRequest("body must be a JSON object")
        serializer = RpcEnvelopeSerializer(data=data)
        if not serializer.is_valid():
            raise InvalidRequest(describe_errors(serializer.errors))
        envelope = dict(serializer.validated_data)
        if envelope["api_version"] != settings.RPC_API_VERSION:
            raise InvalidApiVersion(f"expected {settings.RPC_API_VERSION}")
        return envelope

    def _call(self, principal: Principal, envelope: dict[str, Any], trace_id: str) -> HttpResponse:
        spec = resolve(envelope["method"])
        principal.require_namespace(spec.namespace)
        bound = spec.bind(envelope["args"], envelope["kwargs"])
        spec.check_scope(bound, envelope["user_id"])
        key = envelope["idempotency_key"]
        if spec.writes and not key:
            raise InvalidRequest(f"idempotency_key is required for {spec.full_name} (it writes)")
        deadline_ms = min(envelope["timeout_ms"] or settings.RPC_DEFAULT_TIMEOUT_MS, spec.timeout_ceiling_ms)

        claim = None
        if key:
            fp = idempotency.fingerprint(spec.full_name, envelope["args"], envelope["kwargs"])
            outcome = idempotency.claim(scope=principal.scope, key=key, fp=fp, deadline_ms=deadline_ms)
            if isinstance(outcome, idempotency.StoredResponse):
                _publish_reply(envelope["reply_to"], outcome.body)
                return _response(outcome.status, outcome.body, replayed=True)
            claim = outcome
        return self._execute(spec, bound, claim, envelope["reply_to"], deadline_ms, trace_id)

    def _execute(
        self, spec: MethodSpec, bound: Any, claim: idempotency.Claim | None, reply_to: str | None,
        deadline_ms: int, trace_id: str,
    ) -> HttpResponse:
        lock, done = threading.Lock(), threading.Event()
        state: dict[str, Any] = {"body": None, "timed_out": False}

        def settle(result: Any, error: RpcError | None) -> None:
            body, error = render(result=result, error=error, trace_id=trace_id)
            if claim is not None:
                try:
                    if error is not None and error.retryable:
                        claim.release()  # UNAVAILABLE / INTERNAL: a retry with the same key runs again
                    else:
                        claim.store(200, body)
                except RpcError:
                    log.warning("rpc_idempotency_settle_failed", method=spec.full_name)
            with lock:
                state["body"] = body
                late = state["timed_out"]
            done.set()
            if late:
                _publish_reply(reply_to, body)  # the caller already got TIMEOUT; a reply_to waiter gets the result

        Execution(spec, settle).start(lambda: spec.func(*bound.args, **bound.kwargs))
        done.wait(deadline_ms / 1000)
        with lock:  # decide once: either we answer with the result, or a late settle publishes it
            body = state["body"]
            state["timed_out"] = body is None
        if body is None:
            log.warning("rpc_timeout", method=spec.full_name, deadline_ms=deadline_ms)
            body = envelope_bytes(error=Timeout(), trace_id=trace_id)
        _publish_reply(reply_to, body)
        return _response(200, body)


class MethodsView(APIView):
    """The catalogue: every registered method with its parameters and docstring (authenticated)."""

    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(responses={200: OpenApiResponse(description="{ok, data: {methods: [...]}, trace_id}")})
    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        trace_id = trace_id_var.get() or new_trace_id()
        try:
            principal = authenticate(bearer_token(request.META.get("HTTP_AUTHORIZATION")))
        except RpcError as error:
            return _response(error.http_status, envelope_bytes(error=error, trace_id=trace_id))
        visible = [
            spec.describe() for spec in all_methods() if principal.client is None or principal.client.allows(spec.namespace)
        ]
        return _response(200, envelope_bytes(result={"methods": visible}, trace_id=trace_id))
