"""Who may open ``/ws`` for a uid: the service token, a short-lived user token for that uid, or (migration only) a
source address inside LISTENERS_WS_TRUSTED_NETWORKS. Everything else is refused before any event flows.
"""
from __future__ import annotations

import hmac
import ipaddress
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


def mint_user_token(uid: str) -> tuple[str, int]:
    """A signed token that opens /ws for ``uid`` only, valid WS_TOKEN_TTL_SECONDS (stateless: nothing stored)."""
    return signing.dumps({"uid": uid}, salt=_SALT, compress=False), settings.WS_TOKEN_TTL_SECONDS


def user_of_token(token: str) -> str | None:
    try:
        data = signing.loads(token, salt=_SALT, max_age=settings.WS_TOKEN_TTL_SECONDS)
    except signing.BadSignature:  # includes SignatureExpired
        return None
    uid = data.get("uid") if isinstance(data, dict) else None
    return uid if isinstance(uid, str) else None


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


def authorize(uid: str, token: str | None, client_host: str | None) -> int | None:
    """None when the connection may open ``uid``; otherwise the 4xxx close code to refuse it with."""
    if token:
        service = settings.LISTENERS_SERVICE_TOKEN
        if service and hmac.compare_digest(token.encode(), service.encode()):
            return None
        token_uid = user_of_token(token)
        if token_uid is None:
            return CLOSE_UNAUTHENTICATED
        return None if hmac.compare_digest(token_uid.encode(), uid.encode()) else CLOSE_FORBIDDEN
    if _from_trusted_network(client_host):
        return None
    return CLOSE_UNAUTHENTICATED
