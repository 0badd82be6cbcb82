"""chat.sync / chat.message: watchers on the threads the user's sockets opened (Realtime DB stand-in)."""
from __future__ import annotations

import pytest

from core.integrations.rtdb import reference
from realtime import presence
from tests.conftest import wait_until
from tests.workflows.conftest import chat_events, give_space, go_online, ready

pytestmark = pytest.mark.django_db(transaction=True)


def open_chat_socket(uid: str, socket_id: str, space_code: str, thread_key: str, mode: str = "",
                     owned: bool = True) -> str:
    if owned:
        give_space(uid, space_code)
    member = presence.socket_member(socket_id, presence.ChatInterest(space_code, thread_key, mode))
    presence.join(uid, member)
    return member


def create_thread(space_code: str, mode: str, thread_key: str, messages: int = 0) -> None:
    reference(f"{space_code}/{mode}/{thread_key}").set({"thread_name": "T", "thread_key": thread_key})
    for number in range(messages):
        post(space_code, mode, thread_key, {"content": f"old {number}", "message_type": "MESSAGE_PINNOKIO",
                                            "timestamp": f"2025-09-20T10:00:{number:02d}Z", "read": True})


def post(space_code: str, mode: str, thread_key: str, message: dict) -> str:
    return reference(f"{space_code}/{mode}/{thread_key}/messages").push(message).key


def chat_kinds(worker, uid: str) -> list[str]:
    return sorted(kind for kind in worker.users[uid].streams if kind.startswith("chat:"))


def test_a_thread_found_under_job_chats_gets_a_sync_then_each_new_message(worker):
    create_thread("space1", "job_chats", "t1", messages=3)
    go_online("c1")
    open_chat_socket("c1", "sock1", "space1", "t1")  # mode "" : resolved where the thread exists
    sync = wait_until(lambda: chat_events("c1", "space1", "t1", "chat.sync"))
    assert [m["content"] for m in sync[0]["payload"]["messages"]] == ["old 0", "old 1", "old 2"]
    assert sync[0]["payload"]["space_code"] == "space1" and sync[0]["payload"]["thread_key"] == "t1"
    assert chat_kinds(worker, "c1") == ["chat:space1/job_chats/t1"]

    agent = post("space1", "job_chats", "t1", {"content": "hello", "message_type": "MESSAGE", "read": False,
                                              "sender_id": "agent", "timestamp": "2025-09-20T10:01:00Z"})
    [event] = wait_until(lambda: chat_events("c1", "space1", "t1", "chat.message"))
    assert event["payload"] == {"space_code": "space1", "thread_key": "t1", "raw_messages": [
        {"id": agent, "content": "hello", "message_type": "MESSAGE", "read": False, "sender_id": "agent",
         "timestamp": "2025-09-20T10:01:00Z"}]}
    # The original client marked delivered agent messages read; a user's own message is left alone.
    wait_until(lambda: reference(f"space1/job_chats/t1/messages/{agent}/read").get() is True)
    mine = post("space1", "job_chats", "t1", {"content": "hi", "message_type": "MESSAGE_PINNOKIO", "read": False})
    wait_until(lambda: len(chat_events("c1", "space1", "t1", "chat.message")) == 2)
    assert reference(f"space1/job_chats/t1/messages/{mine}/read").get() is False
    assert len(chat_events("c1", "space1", "t1", "chat.message")) == 2  # marking read did not look like a message


def test_the_watcher_closes_with_the_last_socket_of_its_thread(worker):
    create_thread("space2", "chats", "t2")
    go_online("c2")
    first = open_chat_socket("c2", "a", "space2", "t2", "chats")
    wait_until(lambda: chat_events("c2", "space2", "t2", "chat.sync"))
    second = open_chat_socket("c2", "b", "space2", "t2", "chats")
    wait_until(lambda: len(chat_events("c2", "space2", "t2", "chat.sync")) == 2)  # the new socket is synced too
    presence.leave("c2", first)
    post("space2", "chats", "t2", {"content": "still watched"})
    wait_until(lambda: len(chat_events("c2", "space2", "t2", "chat.message")) == 1)
    presence.leave("c2", second)
    wait_until(lambda: chat_kinds(worker, "c2") == [])
    post("space2", "chats", "t2", {"content": "nobody watching"})
    go_online("c2")  # a later presence change: the reconcile has certainly run
    wait_until(lambda: ready(worker, "c2"))
    assert len(chat_events("c2", "space2", "t2", "chat.message")) == 1
    assert worker.users["c2"].streams.keys() == {"notifications", "messages", "workflow"}


def test_a_thread_that_does_not_exist_yet_is_watched_once_it_appears(worker):
    go_online("c3")
    open_chat_socket("c3", "s", "space3", "t3")
    wait_until(lambda: ready(worker, "c3"))
    assert chat_kinds(worker, "c3") == []
    create_thread("space3", "chats", "t3")
    post("space3", "chats", "t3", {"content": "first"})
    sync = wait_until(lambda: chat_events("c3", "space3", "t3", "chat.sync"))
    assert [m["content"] for m in sync[0]["payload"]["messages"]] == ["first"]
    assert chat_kinds(worker, "c3") == ["chat:space3/chats/t3"]


def test_a_socket_on_a_space_the_user_does_not_own_gets_no_watcher_and_marks_nothing_read(worker):
    create_thread("foreign", "chats", "t1")
    key = post("foreign", "chats", "t1", {"content": "theirs", "message_type": "MESSAGE", "read": False})
    go_online("c-intruder")
    open_chat_socket("c-intruder", "sock-x", "foreign", "t1", "chats", owned=False)
    open_chat_socket("c-intruder", "sock-y", "mine", "t2", "chats")  # an owned one, to know the refresh happened
    create_thread("mine", "chats", "t2")
    wait_until(lambda: chat_kinds(worker, "c-intruder") == ["chat:mine/chats/t2"])
    assert chat_events("c-intruder", "foreign", "t1") == []
    assert reference(f"foreign/chats/t1/messages/{key}").get()["read"] is False
