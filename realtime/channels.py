"""Channel namespaces, declared once (Centrifugo style): names, history and presence options live here only.

``user:{uid}`` carries notif.*, msg.*, workflow.*, service.* events; ``chat:{uid}:{space_code}:{thread_key}`` carries
chat.* events of one thread. The prefixes come from LISTENERS_CHANNEL_PREFIX / LISTENERS_CHAT_CHANNEL_PREFIX (the
Reflex bus consumer SUBSCRIBEs to exactly these names).
"""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from .events import CHAT_PREFIX


# A channel's seq hash (its counter and epoch) lives this long after its last event, or after a socket gave it an epoch:
# the counter must outlive the history so a reconnecting client never sees numbers reused.
SEQ_TTL_S = 7 * 24 * 3600


@dataclass(frozen=True)
class ChannelNamespace:
    name: str
    prefix: str
    history_size: int
    history_ttl_s: int


def namespaces() -> dict[str, ChannelNamespace]:
    history = settings.LISTENERS_HISTORY_SIZE, settings.LISTENERS_HISTORY_TTL
    return {
        "user": ChannelNamespace("user", settings.LISTENERS_CHANNEL_PREFIX, *history),
        "chat": ChannelNamespace("chat", settings.LISTENERS_CHAT_CHANNEL_PREFIX, *history),
    }


def user_channel(uid: str) -> str:
    return f"{settings.LISTENERS_CHANNEL_PREFIX}{uid}"


def chat_channel(uid: str, space_code: str, thread_key: str) -> str:
    return f"{settings.LISTENERS_CHAT_CHANNEL_PREFIX}{uid}:{space_code}:{thread_key}"


def channel_for_event(uid: str, event_type: str, payload: dict) -> str:
    """chat.* events with a thread go to that thread's channel; everything else (msg.* included) to the user's."""
    if event_type.startswith(CHAT_PREFIX) and payload.get("space_code") and payload.get("thread_key"):
        return chat_channel(uid, str(payload["space_code"]), str(payload["thread_key"]))
    return user_channel(uid)


def namespace_of(channel: str) -> ChannelNamespace:
    table = namespaces()
    # The chat prefix is checked first in case one prefix is a prefix of the other.
    for name in ("chat", "user"):
        if channel.startswith(table[name].prefix):
            return table[name]
    raise ValueError(f"channel {channel!r} belongs to no namespace")


def seq_key(channel: str) -> str:
    # Hash tags keep a channel's keys in one slot, so the Lua publish works on Redis Cluster too.
    return f"rt:{{{channel}}}:seq"


def history_key(channel: str) -> str:
    return f"rt:{{{channel}}}:hist"
