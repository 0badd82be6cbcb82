"""msg.new / msg.sync: the direct-messages listener (Realtime DB stand-in → event history)."""
from __future__ import annotations


import pytest

from core.integrations.rtdb import reference
from registry.services import register_session
from tests.conftest import wait_until
from tests.workflows.conftest import go_online, ready, user_events

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGE_KEYS = {"message", "file_name", "collection_id", "collection_name", "url", "status", "doc_id", "job_id",
                "file_id", "function_name", "timestamp", "additional_info"}


def direct_message(job_id: str) -> dict:
    return {"file_name": f"{job_id}.pdf", "status": "to_review", "job_id": job_id, "file_id": f"f-{job_id}",
            "function_name": "Router", "collection_id": "co-1", "additional_info": "", "sender_id": "someone",
            "timestamp": "2025-09-20 11:44:00.000000"}


def test_attach_syncs_existing_messages_without_announcing_them_as_new(worker):
    inbox = reference("clients/m1/direct_message_notif")
    inbox.push(direct_message("j1"))
    inbox.push(direct_message("j2"))
    go_online("m1")
    wait_until(lambda: user_events("m1", "msg.sync"))
    wait_until(lambda: ready(worker, "m1"))
    [sync] = user_events("m1", "msg.sync")
    assert sync["payload"]["count"] == 2 and set(sync["payload"]) == {"messages", "count", "timestamp"}
    assert all(set(item) == MESSAGE_KEYS for item in sync["payload"]["messages"])
    assert user_events("m1", "msg.new") == []


def test_a_new_message_publishes_msg_new_then_a_sync_and_a_delete_only_a_sync(worker):
    go_online("m2")
    wait_until(lambda: user_events("m2", "msg.sync"))
    key = reference("clients/m2/direct_message_notif").push(direct_message("j9")).key
    new = wait_until(lambda: user_events("m2", "msg.new"))
    assert len(new) == 1
    item = new[0]["payload"]["message"]
    assert set(item) == MESSAGE_KEYS
    assert (item["doc_id"], item["job_id"], item["message"], item["url"]) == (key, "j9", "j9.pdf - to_review",
                                                                             "/edit_form/j9")
    wait_until(lambda: user_events("m2", "msg.sync")[-1]["payload"]["count"] == 1)
    types_in_order = [event["type"] for event in user_events("m2")]
    assert types_in_order.index("msg.new") < len(types_in_order) - 1 - types_in_order[::-1].index("msg.sync")
    reference(f"clients/m2/direct_message_notif/{key}").delete()
    wait_until(lambda: user_events("m2", "msg.sync")[-1]["payload"]["count"] == 0)
    assert len(user_events("m2", "msg.new")) == 1


def test_messages_of_companies_the_user_may_not_see_are_neither_announced_nor_synced(worker):
    # A real registry session that states the user's companies (read by the worker from Redis).
    register_session(user_id="m3", session_id="filtered", authorized_companies=["co-1"])
    go_online("m3")
    wait_until(lambda: user_events("m3", "msg.sync"))
    inbox = reference("clients/m3/direct_message_notif")
    inbox.push({**direct_message("other"), "collection_id": "co-2"})
    inbox.push(direct_message("mine"))
    new = wait_until(lambda: user_events("m3", "msg.new"))
    wait_until(lambda: user_events("m3", "msg.sync")[-1]["payload"]["count"] == 1)
    assert [event["payload"]["message"]["job_id"] for event in new] == ["mine"]
    assert [item["job_id"] for item in user_events("m3", "msg.sync")[-1]["payload"]["messages"]] == ["mine"]
