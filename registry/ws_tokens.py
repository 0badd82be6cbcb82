"""User tokens for ``/ws``, bound to the user's live sessions (README, Security).

A token names the user and the user's current token generation (``ws_token_generation_key``, in the user's slot).
It opens the user's stream only while the user has a live session and the generation is unchanged; a staff
Disconnect moves the generation on, so tokens already handed out stop working at once, not when they expire.
"""
from __future__ import annotations

from django.utils import timezone

from core import keys
from core.errors import NotFound
from core.integrations.redis import get_async_redis, get_redis
from realtime.auth import sign_user_token

from . import store


def issue(uid: str) -> tuple[str, int]:
    """A token for ``uid`` and its lifetime in seconds; NOT_FOUND when the user has no live session to bind it to."""
    now = timezone.now()
    if not any(session.expires_at > now for session in store.user_sessions(uid)):
        raise NotFound("no live session for this user (register_user first)")
    generation = int(get_redis().get(keys.ws_token_generation_key(uid)) or 0)
    return sign_user_token(uid, generation)


def revoke(uids: set[str]) -> None:
    """Every token issued so far to these users stops opening sockets (one pipelined round trip)."""
    if not uids:
        return
    pipe = get_redis().pipeline(transaction=False)
    for uid in sorted(uids):
        pipe.incr(keys.ws_token_generation_key(uid))
        pipe.expire(keys.ws_token_generation_key(uid), keys.WS_TOKEN_GENERATION_TTL_S)
    pipe.execute()


async def accepts(uid: str, generation: int) -> bool:
    """Whether a token of ``generation`` may open ``uid``'s stream now (realtime/auth.py calls it on connect)."""
    client = get_async_redis()
    async with client.pipeline(transaction=False) as pipe:
        pipe.get(keys.ws_token_generation_key(uid))
        pipe.smembers(keys.user_sessions_key(uid))
        current, sids = await pipe.execute()
    if int(current or 0) != generation or not sids:
        return False
    async with client.pipeline(transaction=False) as pipe:
        for sid in sids:
            pipe.hget(keys.session_key(uid, sid.decode()), "expires")
        expiries = await pipe.execute()
    now_ms = store.now_ms()
    return any(expires is not None and int(expires) > now_ms for expires in expiries)
