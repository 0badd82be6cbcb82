"""Who may open ``/ws`` for a uid: the service token, a short-lived user token for that uid, or (migration only) a
source address inside LISTENERS_WS_TRUSTED_NETWORKS. Everything else is refused before any event flows.

A user token is signed here (``sign_user_token``) but issued by the registry, which binds it to the user's live
sessions: it carries the user's token generation, and the registry's validator (``set_user_token_validator``, set at
startup by registry/apps.py) accepts it only while the user has a live session and that generation is current. A
staff Disconnect moves the generation on, so every token already issued stops working (README, Security).
"""
from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from functools import lru_cache

from django.conf import settings
from django.core import signing

_SALT = "gateway.ws-user-token"

CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_SLOW_CONSUMER = 4008
CLOSE_DISCONNECTED_BY_STAFF = 4000
CLOSE_TRY_AGAIN = 4013  # server-side delivery failure: reconnect with since


# (uid, generation) -> whether a token of that generation may still open the user's stream.
UserTokenValidator = Callable[[str, int], Awaitable[bool]]
_validator: UserTokenValidator | None = None


def set_user_token_validator(validator: UserTokenValidator) -> None:
    global _validator
    _validator = validator


def sign_user_token(uid: str, generation: int) -> tuple[str, int]:
    """A signed token that opens /ws for ``uid`` only, valid WS_TOKEN_TTL_SECONDS."""
    return signing.dumps({"uid": uid, "gen": generation}, salt=_SALT, compress=False), settings.WS_TOKEN_TTL_SECONDS


def claims_of_token(token: str) -> tuple[str, int] | None:
    """(uid, generation) of a well-signed, unexpired user token; None otherwise."""
    try:
        data = signing.loads(token, salt=_SALT, max_age=settings.WS_TOKEN_TTL_SECONDS)
    except signing.BadSignature:  # includes SignatureExpired
        return None
    if not isinstance(data, dict) or not isinstance(data.get("uid"), str) or not isinstance(data.get("gen"), int):
        return None
    return data["uid"], data["gen"]


def user_of_token(token: str) -> str | None:
    claims = claims_of_token(token)
    return claims[0] if claims else None


@lru_cache(maxsize=1)
def _trusted_networks(raw: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in raw if cidr.strip())


def _from_trusted_network(client_host: str | None) -> bool:
    networks = _trusted_networks(tuple(settings.LISTENERS_WS_TRUSTED_NETWORKS))
    if not networks or not client_host:
        return False
    try:
        address = ipaddress.ip_address(client_host)
    except ValueError:
        return False
    return any(address in network for network in networks)


def is_user_token(token: str | None) -> bool:
    """A token that is not the service token: a browser acting for one user only."""
    service = settings.LISTENERS_SERVICE_TOKEN
    return bool(token) and not (service and hmac.compare_digest(token.encode(), service.encode()))


async def authorize(uid: str, token: str | None, client_host: str | None) -> int | None:
    """None when the connection may open ``uid``; otherwise the 4xxx close code to refuse it with."""
    if token:
        service = settings.LISTENERS_SERVICE_TOKEN
        if service and hmac.compare_digest(token.encode(), service.encode()):
            return None
        claims = claims_of_token(token)
        if claims is None:
            return CLOSE_UNAUTHENTICATED
        token_uid, generation = claims
        if not hmac.compare_digest(token_uid.encode(), uid.encode()):
            return CLOSE_FORBIDDEN
        # Fail closed: without the registry's validator no user token is accepted.
        if _validator is None or not await _validator(token_uid, generation):
            return CLOSE_UNAUTHENTICATED
        return None
    if _from_trusted_network(client_host):
        return None
    return CLOSE_UNAUTHENTICATED
