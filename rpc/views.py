"""``POST /rpc`` and ``GET /rpc/methods`` as Django/DRF views.

In production ``rpc.asgi.RpcEndpoint`` answers ``POST /rpc`` before Django sees it (see that module for why); this
view runs the very same ``gateway.handle`` for Django's test client and for a deployment that mounts Django alone, and
it is what drf-spectacular documents.
"""
from __future__ import annotations

import asyncio
import math
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.parsers import JSONParser
from rest_framework.views import APIView

from core.logging import new_trace_id, trace_id_var

from . import gateway
from .auth import authenticate, bearer_token
from .envelope import RpcEnvelopeSerializer, RpcResponseSerializer
from core.errors import PayloadTooLarge, RpcError
from .execution import rpc_loop
from .registry import all_methods
from .schema import BearerTokenDocumentation, MethodsResponseSerializer
from core.serialization import dumps

# The gateway answers within the caller's deadline; this only bounds a wait on a wedged loop.
_LOOP_WAIT_MARGIN_S = 30.0


def _http_response(reply: gateway.Reply) -> HttpResponse:
    response = HttpResponse(reply.body, status=reply.status, content_type="application/json")
    response["Cache-Control"] = "no-store"
    if reply.replayed:
        response["Idempotent-Replayed"] = "true"
    if reply.retry_after_ms is not None:
        response["Retry-After"] = str(math.ceil(reply.retry_after_ms / 1000))
    return response


class RpcView(APIView):
    """Every backend operation of the Reflex app: one envelope in, one envelope out (contract §1)."""

    authentication_classes = [BearerTokenDocumentation]  # documentation; the gateway checks the bearer
    permission_classes: list = []
    parser_classes = [JSONParser]  # documentation only: the gateway reads and validates the raw body itself

    @extend_schema(
        request=RpcEnvelopeSerializer,
        responses={
            200: OpenApiResponse(RpcResponseSerializer, description=(
                "ok=true with data, or ok=false with METHOD_NOT_FOUND, INVALID_ARGS, NOT_FOUND, TIMEOUT, "
                "UNAVAILABLE or INTERNAL")),
            400: OpenApiResponse(RpcResponseSerializer, description="INVALID_REQUEST / INVALID_API_VERSION"),
            401: OpenApiResponse(RpcResponseSerializer, description="UNAUTHENTICATED"),
            403: OpenApiResponse(RpcResponseSerializer, description="PERMISSION_DENIED"),
            409: OpenApiResponse(RpcResponseSerializer, description="IDEMPOTENCY_CONFLICT (retry_after_ms set)"),
            413: OpenApiResponse(RpcResponseSerializer, description="INVALID_REQUEST: body over RPC_MAX_BODY_BYTES"),
            422: OpenApiResponse(RpcResponseSerializer, description="IDEMPOTENCY_MISMATCH"),
        },
        description=(
            "Calls one registered method. The `method` enum lists the catalogue with each method's parameters; "
            "GET /rpc/methods returns it as JSON. A replayed idempotent response carries `Idempotent-Replayed: true`."
        ),
    )
    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        raw = request.body  # Django has already read the whole body; the gateway decides whether it may look at it

        async def read_body(limit: int) -> bytes:
            if len(raw) > limit:
                raise PayloadTooLarge()
            return raw

        handling = gateway.handle(  # TraceIdMiddleware has bound the caller's X-Trace-Id, or a fresh id
            authorization=request.META.get("HTTP_AUTHORIZATION"), read_body=read_body,
            trace_id=trace_id_var.get() or new_trace_id(),
        )
        future = asyncio.run_coroutine_threadsafe(handling, rpc_loop())
        reply = future.result(timeout=settings.RPC_MAX_TIMEOUT_MS / 1000 + _LOOP_WAIT_MARGIN_S)
        return _http_response(reply)


class MethodsView(APIView):
    """The catalogue: every method the caller may call, with its parameters and docstring (authenticated)."""

    authentication_classes = [BearerTokenDocumentation]
    permission_classes: list = []

    @extend_schema(responses={200: MethodsResponseSerializer, 401: RpcResponseSerializer})
    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        trace_id = trace_id_var.get() or new_trace_id()
        try:
            principal = authenticate(bearer_token(request.META.get("HTTP_AUTHORIZATION")))
        except RpcError as error:
            reply = gateway.Reply(error.http_status, gateway.render(error=error, trace_id=trace_id)[0])
            return _http_response(reply)
        visible = [spec.describe() for spec in all_methods() if principal.allows(spec.namespace)]
        return _http_response(gateway.Reply(200, dumps({"ok": True, "data": {"methods": visible}, "trace_id": trace_id})))
