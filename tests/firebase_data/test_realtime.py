"""FIREBASE_REALTIME chat threads and direct messages, through /rpc against the Realtime Database stand-in."""
from __future__ import annotations

import json

import pytest

from core.integrations.rtdb import reference

from .conftest import OTHER_UID, UID, give_space, share_space

SPACE = "space_acme"


@pytest.fixture(autouse=True)
def own_space():
    """Chat methods act on a space of the acting user (README, "Security", rule 5): UID has a mandate for SPACE."""
    give_space(UID, SPACE)


def _thread(key, mode="chats"):
    return reference(f"{SPACE}/{mode}/{key}").get()


def test_create_chat_is_listed_before_its_first_message(frt):
    created = frt("create_chat", UID, SPACE, "Q3 closing", "chats", "general_chat").data
    key = created["thread_key"]
    assert created["success"] is True and created["created"] is True and created["message_count"] == 0
    assert created["name"] == "Q3 closing" and created["mode"] == "chats" and key.split("_")[1:3] == ["Q3", "closing"]
    stored = _thread(key)
    assert stored["thread_name"] == "Q3 closing" and stored["created_by"] == UID and stored["chat_mode"] == "general_chat"
    assert stored["created_at"].endswith("Z")

    threads = frt("get_all_threads", SPACE, "chats").data
    assert threads == {key: {"thread_key": key, "thread_name": "Q3 closing", "chat_mode": "general_chat",
                             "message_count": 0, "last_activity": stored["created_at"]}}


def test_create_chat_keys_never_collide(frt):
    keys = {frt("create_chat", UID, SPACE, "same name").data["thread_key"] for _ in range(5)}
    assert len(keys) == 5
    assert len(reference(f"{SPACE}/chats").get()) == 5


def test_create_chat_with_an_existing_key_keeps_its_messages(frt):
    frt("create_chat", UID, SPACE, "job 42", "job_chats", "apbookeeper_chat", "job_42")
    frt("send_realtime_message_structured", UID, SPACE, "job_42", "hello")
    again = frt("create_chat", UID, SPACE, "other name", "job_chats", "general_chat", "job_42").data
    assert again["created"] is False and again["name"] == "job 42" and again["message_count"] == 1
    assert _thread("job_42", "job_chats")["thread_name"] == "job 42"


def test_create_chat_validates_keys_and_scope(frt):
    assert frt("create_chat", UID, "space.bad", "x").code == "INVALID_ARGS"
    assert frt("create_chat", UID, "a/b", "x").code == "INVALID_ARGS"
    assert frt("create_chat", UID, SPACE, "x", "other_mode").code == "INVALID_ARGS"
    assert frt("create_chat", UID, SPACE, "x", "chats", "general_chat", "k#1").code == "INVALID_ARGS"
    assert frt("create_chat", OTHER_UID, SPACE, "x").code == "PERMISSION_DENIED"
    assert reference(SPACE).get() is None


def test_rename_and_delete_chat(frt):
    key = frt("create_chat", UID, SPACE, "draft").data["thread_key"]
    assert frt("rename_chat", SPACE, key, "final").data is True
    assert _thread(key)["thread_name"] == "final"
    assert frt("rename_chat", SPACE, "missing", "x").code == "NOT_FOUND"
    assert reference(f"{SPACE}/chats/missing").get() is None

    assert frt("delete_chat", SPACE, key).data is True
    assert _thread(key) is None
    assert frt("delete_chat", SPACE, key).code == "NOT_FOUND"


def test_messages_erase_and_server_side_limit(frt):
    frt("create_chat", UID, SPACE, "job", "job_chats", "general_chat", "job_1")
    for index in range(6):
        assert frt("send_realtime_message_structured", UID, SPACE, "job_1", f"m{index}").data is True
    last = frt("get_channel_messages", SPACE, "job_1", 4).data
    assert [m["content"] for m in last] == ["m2", "m3", "m4", "m5"]
    assert {m["sender_id"] for m in last} == {UID} and all(m["message_type"] == "MESSAGE_PINNOKIO" for m in last)
    assert all(m["id"].startswith("-") and m["read"] is False for m in last)
    assert frt("get_channel_messages", SPACE, "job_1", 1000).code == "INVALID_ARGS"

    listed = frt("get_all_threads", SPACE).data["job_1"]
    assert listed["message_count"] == 6 and listed["last_activity"] == last[-1]["timestamp"]

    assert frt("erase_chat", SPACE, "job_1").data is True
    assert frt("get_channel_messages", SPACE, "job_1").data == []
    assert _thread("job_1", "job_chats")["thread_name"] == "job"


def test_structured_card_speeddial_and_tools(frt):
    card = {"message_type": "CARD_CLICKED_PINNOKIO", "card": {"action": "approve"}}
    assert frt("send_realtime_message_structured", UID, SPACE, "t1", None, "CARD_CLICKED_PINNOKIO", card).data is True
    assert frt("send_speeddial_action", UID, SPACE, "t1", "TERMINATE", {"job_id": "j1"}).data is True
    tools = [{"name": "search", "schema": {}}, {"name": "book"}]
    assert frt("send_tools_list", UID, SPACE, "t1", tools).data is True

    messages = list(reference(f"{SPACE}/job_chats/t1/messages").get().values())
    by_type = {m["message_type"]: m for m in messages}
    assert by_type["CARD_CLICKED_PINNOKIO"]["card"] == {"action": "approve"}
    assert by_type["CARD_CLICKED_PINNOKIO"]["sender_id"] == UID
    assert by_type["SPEEDDIAL"]["action"] == "TERMINATE" and by_type["SPEEDDIAL"]["job_id"] == "j1"
    assert json.loads(by_type["TOOL"]["content"]) == {"tool_list": ["search", "book"]}

    assert frt("send_tools_list", UID, SPACE, "t1", [{"schema": {}}]).code == "INVALID_ARGS"
    assert frt("send_realtime_message_structured", UID, SPACE, "t1").code == "INVALID_ARGS"
    refused = frt("send_realtime_message_structured", UID, SPACE, "t1", message_data={"bad.key": 1})
    assert refused.code == "INVALID_ARGS"


def test_direct_messages(frt):
    share_space(OTHER_UID, SPACE)  # a direct message goes to a user sharing one of the sender's companies
    message = {"file_name": "inv.pdf", "status": "done", "job_id": "j1", "collection_id": "space_acme",
               "sender_id": "someone_else"}
    assert frt("send_direct_message", UID, OTHER_UID, message).data is True
    assert frt("send_direct_message", UID, OTHER_UID, {"collection_id": "space_other"}).data is True
    [stored, _] = reference(f"clients/{OTHER_UID}/direct_message_notif").get().values()
    assert stored["sender_id"] == UID and stored["timestamp"].endswith("Z")  # no impersonation

    inbox = frt("get_unread_direct_messages", OTHER_UID, uid=OTHER_UID).data
    assert len(inbox) == 2 and all("doc_id" in m for m in inbox)
    companies = [{"contact_space_id": "space_acme", "name": "ACME SA"}]
    [only] = frt("get_unread_direct_messages", OTHER_UID, companies, uid=OTHER_UID).data
    assert only["collection_name"] == "ACME SA" and only["job_id"] == "j1"
    assert frt("get_unread_direct_messages", OTHER_UID).code == "PERMISSION_DENIED"

    assert frt("delete_direct_message", OTHER_UID, only["doc_id"], uid=OTHER_UID).data is True
    assert len(reference(f"clients/{OTHER_UID}/direct_message_notif").get()) == 1
    assert frt("delete_direct_message", OTHER_UID, "-missing", uid=OTHER_UID).data is True


@pytest.mark.parametrize("method,args", [
    ("get_all_threads", [SPACE, "chats"]),
    ("get_channel_messages", [SPACE, "t1", 10, "job_chats"]),
])
def test_reads_of_empty_spaces(frt, method, args):
    assert frt(method, *args).data in ({}, [])
