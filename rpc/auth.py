"""Bearer authentication for /rpc and /debug: fail closed, constant-time comparisons."""
from __future__ import annotations

import hmac
from dataclasses import dataclass

from django.conf import settings

from .errors import PermissionDenied, Unauthenticated
from .models import ApiClient
from .services import api_client_mark_used, hash_token, split_token


@dataclass(frozen=True)
class Principal:
    """Who is calling: the service token (all namespaces) or one API client (its namespaces)."""

    scope: str  # idempotency keys are scoped by this
    name: str
    client: ApiClient | None = None

    def require_namespace(self, namespace: str) -> None:
        if self.client is not None and not self.client.allows(namespace):
            raise PermissionDenied(f"this API client may not call {namespace}.*")


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 512:
        return None
    return token


def authenticate(token: str | None) -> Principal:
    """Resolve a bearer token or raise; with no service token and no API client, nothing authenticates."""
    if token is None:
        raise Unauthenticated()
    service_token = settings.LISTENERS_SERVICE_TOKEN
    if service_token and hmac.compare_digest(token.encode(), service_token.encode()):
        return Principal(scope="svc", name="service")
    prefix = split_token(token)
    if prefix is not None:
        client = ApiClient.objects.filter(token_prefix=prefix, revoked_at__isnull=True).first()
        if client is not None and hmac.compare_digest(client.token_hash, hash_token(token)):
            api_client_mark_used(client=client)
            return Principal(scope=f"c{client.pk}", name=client.name, client=client)
    raise Unauthenticated()
