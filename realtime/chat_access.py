"""Who may open a chat socket (``/ws?space_code=…&thread_key=…``), checked before it subscribes (README, Security).

For a user token (the browser, acting for that user only): the space must be one of the user's (core/tenancy.py) and
the thread must exist. For every connection: a user holds
at most ``LISTENERS_WS_MAX_CHAT_SOCKETS`` live chat sockets across all processes (counted from presence, where each
chat socket is a ``ws:{id}|{space}|{thread}|{mode}`` member), so one user cannot make the listeners worker open
thousands of thread watchers. The service token and the trusted bus consumer are the operator's own backends: they
may open a thread before it exists (the worker starts watching when it appears).
"""
from __future__ import annotations

import time

from asgiref.sync import sync_to_async
from django.conf import settings

from core import tenancy
from core.integrations.redis import get_async_redis
from core.integrations.rtdb import reference

from .auth import CLOSE_FORBIDDEN
from .presence import user_keys

CLOSE_THREAD_NOT_FOUND = 4404
CLOSE_TOO_MANY_CHAT_SOCKETS = 4429
CHAT_MODES = ("chats", "job_chats")


def _owns(uid: str, space_code: str) -> bool:
    return space_code in tenancy.user_spaces(uid)


def _thread_exists(space_code: str, thread_key: str, mode: str) -> bool:
    modes = (mode,) if mode in CHAT_MODES else CHAT_MODES
    return any(reference(f"{space_code}/{m}/{thread_key}").get(shallow=True) is not None for m in modes)


async def live_chat_sockets(uid: str) -> int:
    members_key = user_keys(uid)[0]
    members = await get_async_redis().zrangebyscore(members_key, int(time.time() * 1000), "+inf")
    return sum(1 for member in members if b"|" in member)


async def chat_refusal(uid: str, space_code: str, thread_key: str, mode: str, *, user_token: bool) -> int | None:
    """None when the chat socket may open; otherwise the close code to refuse it with."""
    if await live_chat_sockets(uid) >= settings.LISTENERS_WS_MAX_CHAT_SOCKETS:
        return CLOSE_TOO_MANY_CHAT_SOCKETS
    if not user_token:
        return None
    if not await sync_to_async(_owns, thread_sensitive=False)(uid, space_code):
        return CLOSE_FORBIDDEN
    if not await sync_to_async(_thread_exists, thread_sensitive=False)(space_code, thread_key, mode):
        return CLOSE_THREAD_NOT_FOUND
    return None
