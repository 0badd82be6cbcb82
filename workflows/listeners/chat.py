"""``chat:{space}/{mode}/{thread}``: one watcher per chat thread the user's sockets opened (Realtime DB) →
``chat.sync`` when a socket opens the thread, ``chat.message`` per new message.

Unlike the table's kinds (listeners/__init__.py), chat listeners come and go with the user's sockets:
``ChatThreads`` says which threads are wanted, and UserListeners opens and closes their listeners accordingly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import redis
import structlog
from firebase_admin import exceptions as fb_exceptions
from google.api_core.exceptions import GoogleAPICallError, RetryError

from core import tenancy
from core.integrations.rtdb import reference
from realtime import presence
from realtime.events import CHAT_MESSAGE, CHAT_SYNC

from .. import events
from ..rtdb_streams import RtdbStream, apply_event, new_children
from ..companies import Companies
from .base import ChangeHandler, ListenerHost, Sync

log = structlog.get_logger(__name__)

CHAT_KIND_PREFIX = "chat:"  # every thread's kind; their metric label is just "chat" (metric_kind)
CHAT_MODES = ("chats", "job_chats")


def chat_kind(space_code: str, mode: str, thread_key: str) -> str:
    return f"{CHAT_KIND_PREFIX}{space_code}/{mode}/{thread_key}"


def is_chat_kind(kind: str) -> bool:
    return kind.startswith(CHAT_KIND_PREFIX)


def resolve_chat_mode(space_code: str, thread_key: str) -> str | None:
    """Where a thread lives when the socket did not say: ``chats`` or ``job_chats``; None while it exists nowhere."""
    for mode in CHAT_MODES:
        if reference(f"{space_code}/{mode}/{thread_key}").get(shallow=True) is not None:
            return mode
    return None


@dataclass(frozen=True)
class ChatThread:
    space_code: str
    mode: str
    thread_key: str

    @property
    def kind(self) -> str:
        return chat_kind(self.space_code, self.mode, self.thread_key)

    @property
    def path(self) -> str:
        return f"{self.space_code}/{self.mode}/{self.thread_key}/messages"


def _socket_id(member: str) -> str:
    return member.split("|", 1)[0]


class ChatThreads:
    """The threads a user's members (presence) have open, with the sockets on each. A thread's mode, when a socket
    did not give it, is looked up once and remembered while the thread stays open."""

    def __init__(self, uid: str) -> None:
        self._uid = uid
        self._modes: dict[tuple[str, str], str] = {}  # (space_code, thread_key) -> resolved mode
        self.unresolved = False  # a socket's thread exists nowhere yet: presence refreshes retry it

    def wanted(self, members: Iterable[str]) -> dict[str, tuple[ChatThread, set[str]]]:
        """kind -> (thread, ids of the sockets that opened it)."""
        wanted: dict[str, tuple[ChatThread, set[str]]] = {}
        self.unresolved = False
        interests = [(member, interest) for member in members for interest in presence.chat_interests([member])]
        spaces = self._own_spaces() if interests else frozenset()  # most users have no chat socket: no lookup
        for member, interest in interests:
            if spaces is None or interest.space_code not in spaces:
                # Never watch (nor mark read) a thread of a space that is not the user's (README, Security).
                # Retried at each members refresh: the space may be granted a moment later (a new mandate is
                # seen within TENANT_SPACES_CACHE_SECONDS), or Firestore was unreachable.
                self.unresolved = True
                continue
            mode = interest.mode or self._resolve(interest.space_code, interest.thread_key)
            if mode is None:
                self.unresolved = True  # the thread exists nowhere yet: the next refresh retries
                continue
            thread = ChatThread(interest.space_code, mode, interest.thread_key)
            wanted.setdefault(thread.kind, (thread, set()))[1].add(_socket_id(member))
        active = {(thread.space_code, thread.thread_key) for thread, _ in wanted.values()}
        self._modes = {key: mode for key, mode in self._modes.items() if key in active}
        return wanted

    def clear(self) -> None:
        self._modes.clear()

    def _own_spaces(self) -> frozenset[str] | None:
        try:
            return tenancy.user_spaces(self._uid)
        except (GoogleAPICallError, RetryError, redis.RedisError, OSError) as exc:
            log.warning("chat_spaces_unavailable", uid=self._uid, error=type(exc).__name__)
            return None

    def _resolve(self, space_code: str, thread_key: str) -> str | None:
        key = (space_code, thread_key)
        if key not in self._modes:
            try:
                mode = resolve_chat_mode(space_code, thread_key)
            except (fb_exceptions.FirebaseError, ValueError) as exc:
                log.warning("chat_mode_resolution_failed", uid=self._uid, error=type(exc).__name__)
                return None
            if mode is None:
                return None
            self._modes[key] = mode
        return self._modes[key]


class ChatListener:
    """A mirror of one thread's messages; its first snapshot is synced, later new children are sent one by one."""

    filtered_by_company = False  # the thread's space is the user's (checked before watching)

    def __init__(self, host: ListenerHost, thread: ChatThread, sockets: set[str]) -> None:
        self._host = host
        self.kind = thread.kind
        self.thread = thread
        self.sockets = sockets
        self.mirror: dict[str, Any] = {}
        self.ready = False

    def follow(self, sockets: set[str]) -> bool:
        """The thread's sockets now; True when one joined (it gets the recent messages too)."""
        joined = bool(sockets - self.sockets)
        self.sockets = sockets
        return joined

    def open(self, on_change: ChangeHandler) -> RtdbStream:
        return RtdbStream(self.thread.path, on_change, self._host.ctx.rtdb)

    def apply(self, stream: RtdbStream, event_type: str, path: str, data: Any) -> None:
        known = set(self.mirror) if self.ready else None
        self.mirror = apply_event(self.mirror, event_type, path, data)
        if known is None:
            self.ready = True
            self._host.request_sync(self.kind)
            return
        for key in new_children(known, self.mirror):
            message = self.mirror[key]
            self._host.publish(CHAT_MESSAGE, {
                "space_code": self.thread.space_code, "thread_key": self.thread.thread_key,
                "raw_messages": [{"id": key, **message}],
            })
            if events.should_mark_read(message):
                self._mark_read(key)

    def _mark_read(self, message_id: str) -> None:
        """What the original client did for agent messages it delivered (MESSAGE/CARD/TOOL/CMMD, unread)."""
        try:
            reference(f"{self.thread.path}/{message_id}").update({"read": True})
        except (fb_exceptions.FirebaseError, ValueError) as exc:
            log.warning("chat_mark_read_failed", uid=self._host.uid, error=type(exc).__name__)

    def sync_payload(self, companies: Companies) -> Sync:
        if not self.ready:
            return None
        return CHAT_SYNC, {
            "space_code": self.thread.space_code, "thread_key": self.thread.thread_key,
            "messages": events.chat_messages(self.mirror),
        }
