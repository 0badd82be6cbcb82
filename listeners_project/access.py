"""Operational endpoints that tell an outsider too much in production (metric names and counts, the whole RPC schema)
are behind the same bearer token as ``/rpc`` when ``GATEWAY_MODE=PROD``; LOCAL keeps them open for the dev stack."""
from __future__ import annotations

import functools
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from core.errors import RpcError
from rpc.auth import authenticate, bearer_token

View = Callable[..., HttpResponse]


def token_required_in_prod(view: View) -> View:
    @functools.wraps(view)
    def guarded(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if settings.IS_PROD:
            try:
                authenticate(bearer_token(request.META.get("HTTP_AUTHORIZATION")))
            except RpcError as error:
                return JsonResponse({"error": error.as_dict()}, status=error.http_status)
        return view(request, *args, **kwargs)

    return guarded
