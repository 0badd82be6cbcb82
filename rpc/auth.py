"""Bearer authentication for /rpc, /rpc/methods and /debug: fail closed, constant-time comparisons."""
from __future__ import annotations

import hmac
from dataclasses import dataclass

from django.conf import settings

from core import tenancy
from core.errors import PermissionDenied, Unauthenticated

NOT_BOUND = "this API client may not act for this user"
from . import token_cache
from .models import ApiClient
from .services import api_client_mark_used, hash_token, split_token

_MAX_TOKEN_LENGTH = 512


@dataclass(frozen=True)
class Principal:
    """Who is calling: the service token (all namespaces) or one API client (its namespaces)."""

    scope: str  # idempotency keys are scoped by this
    name: str
    client: ApiClient | None = None

    @property
    def reply_prefix(self) -> str:
        """Where this caller may ask for its reply: an API client only under its own id, so it can never publish
        into another client's (or the service's) reply channels."""
        if self.client is None:
            return settings.RPC_REPLY_PREFIX
        return f"{settings.RPC_REPLY_PREFIX}{self.client.pk}:"

    def allows(self, namespace: str) -> bool:
        return self.client is None or self.client.allows(namespace)

    def require_user(self, user_id: str | None) -> None:
        """Staff may bind an API client to users (README, Security): acting for anyone else is refused."""
        if self.client is not None and not self.client.may_act_for(user_id):
            raise PermissionDenied(NOT_BOUND)

    @property
    def bound_companies(self) -> frozenset[str]:
        return frozenset(self.client.bound_companies) if self.client is not None else frozenset()

    def require_company_user(self, user_id: str) -> None:
        """A client bound to companies acts only for their users (blocking: resolving spaces may read Firestore)."""
        if not self.bound_companies & tenancy.user_spaces(user_id):
            raise PermissionDenied(NOT_BOUND)

    def require_namespace(self, namespace: str) -> None:
        if not self.allows(namespace):
            raise PermissionDenied(f"this API client may not call {namespace}.*")


SERVICE = Principal(scope="svc", name="service")


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > _MAX_TOKEN_LENGTH:
        return None
    return token


def authenticate_service_token(token: str | None) -> Principal | None:
    """The service principal when ``token`` is LISTENERS_SERVICE_TOKEN (no database involved), else None."""
    service_token = settings.LISTENERS_SERVICE_TOKEN
    if token is not None and service_token and hmac.compare_digest(token.encode(), service_token.encode()):
        return SERVICE
    return None


def cached_api_client(token: str) -> Principal | None | object:
    """The API client principal of ``token`` from the process cache (no SQL): a Principal, None when the token was
    refused, or token_cache.MISS."""
    return token_cache.get(hash_token(token))


def authenticate(token: str | None) -> Principal:
    """Resolve a bearer token or raise; with no service token and no API client, nothing authenticates."""
    principal = authenticate_service_token(token)
    if principal is not None:
        return principal
    prefix = split_token(token) if token is not None else None
    if prefix is None:
        raise Unauthenticated()
    token_hash = hash_token(token)
    cached = token_cache.get(token_hash)
    if cached is token_cache.MISS:
        cached = None
        client = ApiClient.objects.filter(token_prefix=prefix, revoked_at__isnull=True).first()
        if client is not None and hmac.compare_digest(client.token_hash, token_hash):
            api_client_mark_used(client=client)
            cached = Principal(scope=f"c{client.pk}", name=client.name, client=client)
        token_cache.put(token_hash, cached)
    if cached is None:
        raise Unauthenticated()
    return cached
