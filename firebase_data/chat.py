"""Chat threads in the Realtime Database (FIREBASE_REALTIME), layout kept from the original (§3):

``{space_code}/{mode}/{thread_key}`` holds the thread metadata (thread_name, thread_key, created_at, created_by,
chat_mode) and ``messages/{pushId}`` (content, sender_id, timestamp, message_type, read, optional action).
``mode`` is ``chats`` or ``job_chats``. Timestamps are ISO-8601 UTC text (RTDB has no timestamp type; the original
wrote naive local ``str(datetime.now())``, which still sorts correctly before the new values of the same day).
"""
from __future__ import annotations

import json
import re
import secrets
import time
from typing import Annotated, Any

from firebase_admin import db, exceptions as fb_exceptions

from core.integrations.rtdb import reference
from core.errors import InvalidArgs, NotFound
from rpc.types import Identifier, MaxLen, Public, UserId

from .namespaces import FIREBASE_REALTIME
from .store import iso_utc, utc_now
from .types import ChatMode, Limit, Payload, ShortText, SpaceCode, ThreadKey

ChatModeName = Annotated[str, Identifier(64), Public("a label stored on the thread")]
ThreadName = Annotated[ShortText, Public("a display name stored on the thread")]
_SLUG_RE = re.compile(r"[^a-zA-Z0-9]")


def _thread(space_code: str, mode: str, thread_key: str) -> db.Reference:
    return reference(f"{space_code}/{mode}/{thread_key}")


def _now() -> str:
    return iso_utc(utc_now())


def new_thread_key(thread_name: str) -> str:
    """``{epoch_s}_{name}`` as before, plus a random suffix: two chats created in the same second never collide."""
    slug = _SLUG_RE.sub("_", thread_name)[:40]
    return f"{int(time.time())}_{slug}_{secrets.token_hex(4)}"


def _last_activity(thread: dict[str, Any]) -> str:
    messages = thread.get("messages")
    stamps = [m["timestamp"] for m in messages.values() if isinstance(m, dict) and "timestamp" in m] if isinstance(messages, dict) else []
    return max(stamps) if stamps else str(thread.get("created_at", ""))


def _message_count(thread: dict[str, Any]) -> int:
    messages = thread.get("messages")
    return len(messages) if isinstance(messages, dict) else 0


@FIREBASE_REALTIME.method(writes=True)
def create_chat(
    user_id: UserId, space_code: SpaceCode, thread_name: ThreadName, mode: ChatMode = "chats",
    chat_mode: ChatModeName = "general_chat", thread_key: ThreadKey | None = None,
) -> dict[str, Any]:
    """Create a thread; returns {success, thread_key, mode, chat_mode, name, last_activity, message_count, created}.

    The thread is written without a ``messages`` key (RTDB drops empty objects anyway) and ``get_all_threads``
    lists it right away. An existing ``thread_key`` is never overwritten: that thread is returned with
    ``created: false`` (the original replaced it, wiping its messages)."""
    key = thread_key or new_thread_key(thread_name)
    ref = _thread(space_code, mode, key)
    metadata = {
        "thread_name": thread_name, "thread_key": key, "created_at": _now(), "created_by": user_id,
        "chat_mode": chat_mode,
    }
    current, etag = ref.get(etag=True)
    created = False
    if current is None:
        created, current, _ = ref.set_if_unchanged(etag, metadata)
        if created:
            current = metadata
    if not isinstance(current, dict):  # someone raced us with a non-thread value at that key
        raise InvalidArgs(f"{key!r} is not a chat thread")
    return {
        "success": True, "thread_key": key, "mode": mode, "chat_mode": current.get("chat_mode", chat_mode),
        "name": current.get("thread_name", key), "last_activity": _last_activity(current),
        "message_count": _message_count(current), "created": created,
    }


def _require_thread(ref: db.Reference, thread_key: str) -> None:
    if ref.get(shallow=True) is None:
        raise NotFound(f"no chat thread {thread_key!r}")


@FIREBASE_REALTIME.method(writes=True)
def delete_chat(space_code: SpaceCode, thread_key: ThreadKey, mode: ChatMode = "chats") -> bool:
    """Delete a thread and its messages. NOT_FOUND when it does not exist (was ``False``)."""
    ref = _thread(space_code, mode, thread_key)
    _require_thread(ref, thread_key)
    ref.delete()
    return True


@FIREBASE_REALTIME.method(writes=True)
def rename_chat(space_code: SpaceCode, thread_key: ThreadKey, new_name: ShortText, mode: ChatMode = "chats") -> bool:
    """Set ``thread_name``. NOT_FOUND when the thread does not exist (was ``False``)."""
    ref = _thread(space_code, mode, thread_key)
    _require_thread(ref, thread_key)
    ref.update({"thread_name": new_name})
    return True


@FIREBASE_REALTIME.method(writes=True)
def erase_chat(space_code: SpaceCode, thread_key: ThreadKey, mode: ChatMode = "job_chats") -> bool:
    """Delete every message of a thread, keeping the thread itself; True also when there was nothing to erase."""
    _thread(space_code, mode, thread_key).child("messages").delete()
    return True


@FIREBASE_REALTIME.method(writes=False)
def get_all_threads(space_code: SpaceCode, mode: ChatMode = "job_chats") -> dict[str, dict[str, Any]]:
    """{thread_key: {thread_key, thread_name, chat_mode, message_count, last_activity}} for every thread of the
    space, including new threads without messages (the original hid them until their first message)."""
    threads = reference(f"{space_code}/{mode}").get()
    if not isinstance(threads, dict):
        return {}
    listed: dict[str, dict[str, Any]] = {}
    for key, thread in threads.items():
        if not isinstance(thread, dict) or not ({"messages", "thread_name", "thread_key"} & thread.keys()):
            continue
        listed[key] = {
            "thread_key": key,
            "thread_name": thread.get("thread_name", key),
            "chat_mode": thread.get("chat_mode", "general_chat"),
            "message_count": _message_count(thread),
            "last_activity": _last_activity(thread),
        }
    return listed


def _push(space_code: str, mode: str, thread_key: str, message: dict[str, Any]) -> str:
    return push_checked(_thread(space_code, mode, thread_key).child("messages"), message)


def push_checked(ref: db.Reference, value: dict[str, Any]) -> str:
    """Push; a value the database refuses (e.g. a key containing '.') is the caller's error, not INTERNAL."""
    try:
        return ref.push(value).key
    except fb_exceptions.InvalidArgumentError:
        raise InvalidArgs("the database refused this message (keys must not contain . $ # [ ] /)") from None


@FIREBASE_REALTIME.method(writes=True)
def send_realtime_message_structured(
    user_id: UserId, space_code: SpaceCode, thread_key: ThreadKey, text: Annotated[str, MaxLen(100_000)] | None = None,
    message_type: ShortText = "MESSAGE_PINNOKIO", message_data: Payload | None = None, mode: ChatMode = "job_chats",
) -> bool:
    """Push a message. With ``message_data`` it is pushed as given (``CARD_CLICKED_PINNOKIO`` cards too), with
    ``timestamp`` filled in when missing and ``sender_id`` always the caller; otherwise {content: text, sender_id, timestamp,
    message_type, read: false}."""
    if message_data:
        # The caller's fields first, the sender last: nobody stores a message under another user's sender_id.
        message = {"timestamp": _now(), **message_data, "sender_id": user_id}
    elif text is not None:
        message = {"content": text, "sender_id": user_id, "timestamp": _now(), "message_type": message_type, "read": False}
    else:
        raise InvalidArgs("give text or message_data")
    _push(space_code, mode, thread_key, message)
    return True


@FIREBASE_REALTIME.method(writes=False)
def get_channel_messages(
    space_code: SpaceCode, thread_key: ThreadKey, limit: Limit = 50, mode: ChatMode = "job_chats"
) -> list[dict[str, Any]]:
    """The last ``limit`` messages as [{id, ...fields}], oldest first. The limit is applied by the database
    (push ids order by creation), not after downloading the whole thread as before."""
    messages = _thread(space_code, mode, thread_key).child("messages").order_by_key().limit_to_last(limit).get()
    if not messages:
        return []
    items = [{"id": key, **value} for key, value in messages.items() if isinstance(value, dict)]
    return sorted(items, key=lambda item: str(item.get("timestamp", "")))


@FIREBASE_REALTIME.method(writes=True)
def send_speeddial_action(
    user_id: UserId, space_code: SpaceCode, thread_key: ThreadKey, action: ShortText,
    additional_data: Payload | None = None, mode: ChatMode = "job_chats",
) -> bool:
    """Push {timestamp, read: false, ...additional_data, sender_id, message_type: SPEEDDIAL, action}: the caller's
    ``additional_data`` never overrides the sender, the type or the action."""
    # The caller's fields first, the server's last (sender, fixed type, the action argument).
    message = {"timestamp": _now(), "read": False, **(additional_data or {}), "sender_id": user_id,
               "message_type": "SPEEDDIAL", "action": action}
    _push(space_code, mode, thread_key, message)
    return True


@FIREBASE_REALTIME.method(writes=True)
def send_tools_list(
    user_id: UserId, space_code: SpaceCode, thread_key: ThreadKey, tools_config: Annotated[list[dict], MaxLen(500)],
    mode: ChatMode = "job_chats",
) -> bool:
    """Push a TOOL message whose content is the JSON text {"tool_list": [names]}."""
    names = []
    for index, tool in enumerate(tools_config):
        if not isinstance(tool.get("name"), str):
            raise InvalidArgs(f"tools_config[{index}] needs a string 'name'")
        names.append(tool["name"])
    message = {
        "content": json.dumps({"tool_list": names}), "sender_id": user_id, "timestamp": _now(),
        "message_type": "TOOL", "read": False,
    }
    _push(space_code, mode, thread_key, message)
    return True
