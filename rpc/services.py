"""Writes for API clients (HackSoft style: keyword-only, typed, one transaction each)."""
from __future__ import annotations

import hashlib
import secrets

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from . import token_cache
from .models import ApiClient

TOKEN_PREFIX = "gwk"
_LAST_USED_RESOLUTION_S = 60


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a plain SHA-256 is enough (no password stretching needed).
    return hashlib.sha256(token.encode()).hexdigest()


def split_token(token: str) -> str | None:
    """The lookup prefix of a well-formed API client token, else None."""
    parts = token.split("_", 2)
    if len(parts) == 3 and parts[0] == TOKEN_PREFIX and len(parts[1]) == 12:
        return parts[1]
    return None


def api_client_issue_token(*, client: ApiClient) -> str:
    """Give ``client`` a new token and save it; returns the plaintext, which is never stored and can't be shown again.

    On an existing client this is a rotation: the previous token stops working at once.
    """
    prefix = secrets.token_hex(6)
    token = f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    client.token_prefix = prefix
    client.token_hash = hash_token(token)
    client.save()
    token_cache.forget_all()  # this process at once; others within token_cache.TTL_S
    return token


@transaction.atomic
def api_client_create(
    *, name: str, namespaces: list[str], bound_users: list[str] | None = None,
    bound_companies: list[str] | None = None, created_by: AbstractBaseUser | None = None,
) -> tuple[ApiClient, str]:
    """Create a client (bound to users and/or companies when given); returns it with its plaintext token (shown once)."""
    client = ApiClient(name=name, namespaces=sorted(set(namespaces)), bound_users=sorted(set(bound_users or [])),
                       bound_companies=sorted(set(bound_companies or [])), created_by=created_by)
    client.full_clean(exclude=["token_prefix", "token_hash"])
    token = api_client_issue_token(client=client)
    return client, token


def api_client_revoke(*, client: ApiClient) -> bool:
    """Revoke at once (the next call with its token is UNAUTHENTICATED); False if it was already revoked."""
    if client.revoked_at is not None:
        return False
    client.revoked_at = timezone.now()
    client.save(update_fields=["revoked_at"])
    token_cache.forget_all()  # this process at once; others within token_cache.TTL_S
    return True


def api_client_mark_used(*, client: ApiClient) -> None:
    """Record use at most once a minute: a write per RPC would cost more than the RPC."""
    now = timezone.now()
    if client.last_used_at is None or (now - client.last_used_at).total_seconds() > _LAST_USED_RESOLUTION_S:
        ApiClient.objects.filter(pk=client.pk).update(last_used_at=now)
        client.last_used_at = now
