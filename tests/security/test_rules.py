"""The cases of README "Security", rules 2, 4, 5 (RPC) and 7, one test each, against the real backends."""
from __future__ import annotations

import time
import uuid

import pytest

from core.integrations import chroma as chroma_adapter
from core.integrations.firebase import get_firestore
from core.integrations.rtdb import reference
from tests.conftest import wait_until

A, B = "rule_alice", "rule_bob"
SPACE_A, SPACE_B = "space_rule_a", "space_rule_b"


@pytest.fixture(autouse=True)
def wiped(stack) -> None:
    """This directory's conftest seeds once per module; these tests start from empty backends, as everywhere else."""
    stack.wipe()


@pytest.fixture
def call(rpc):
    def invoke(method: str, *args, uid: str = A, **kwargs):
        return rpc(method, *args, user_id=uid, idempotency_key=uuid.uuid4().hex, kwargs=kwargs)

    return invoke


def give_space(uid: str, space: str, mandate: str = "m1") -> str:
    path = f"clients/{uid}/bo_clients/c1/mandates/{mandate}"
    get_firestore().document(path).set({"contact_space_id": space, "contact_space_name": space, "isactive": True})
    return path


# --- rule 2: spaces --------------------------------------------------------------------------------------------------
def test_a_new_and_a_removed_mandate_are_honoured_within_5_s(call):
    threads = ("FIREBASE_REALTIME.get_all_threads", SPACE_A, "chats")
    assert call(*threads).code == "PERMISSION_DENIED"  # cached: A has no space yet
    started = time.monotonic()
    path = give_space(A, SPACE_A)
    wait_until(lambda: call(*threads).code is None, timeout=5.0, interval=0.2)
    get_firestore().document(path).delete()
    wait_until(lambda: call(*threads).code == "PERMISSION_DENIED", timeout=5.0, interval=0.2)
    assert time.monotonic() - started < 12


def test_a_company_shared_by_the_server_is_a_space_but_a_user_cannot_share_one_with_himself(call):
    give_space(B, SPACE_B)
    profile = {"uid": A, "email": "a@example.com"}
    assert call("FIREBASE_MANAGEMENT.check_and_create_client_document", profile, A).data is True
    stolen = {**profile, "share_settings": {"company_id": SPACE_B}}
    assert call("FIREBASE_MANAGEMENT.check_and_create_client_document", stolen, A).code == "PERMISSION_DENIED"
    assert "share_settings" not in get_firestore().document(f"users/{A}").get().to_dict()
    assert call("FIREBASE_REALTIME.get_all_threads", SPACE_B, "chats").code == "PERMISSION_DENIED"

    get_firestore().document(f"users/{A}").update({"share_settings": {"company_id": SPACE_B}})  # the server shares it
    wait_until(lambda: call("FIREBASE_REALTIME.get_all_threads", SPACE_B, "chats").code is None, timeout=5.0,
               interval=0.2)


# --- rule 4: server-owned data ---------------------------------------------------------------------------------------
def test_generic_job_writers_only_reach_their_collections(call):
    balance = get_firestore().document(f"clients/{A}/billing/current_balance")
    balance.set({"current_balance": "10.00"})
    for method in ("add_or_update_job_by_job_id", "add_or_update_job_by_file_id", "add_or_update_job_by_batch_id"):
        key = method.rsplit("_by_", 1)[1]
        forged = {key: "current_balance", "current_balance": "1000000"}
        assert call(f"FIREBASE_MANAGEMENT.{method}", f"clients/{A}/billing", forged).code == "PERMISSION_DENIED"
    assert call("FIREBASE_MANAGEMENT.update_status_to_pending", f"clients/{A}/billing/current_balance").code == (
        "INVALID_ARGS")
    assert balance.get().to_dict() == {"current_balance": "10.00"}
    assert call("FIREBASE_MANAGEMENT.add_or_update_job_by_job_id", f"clients/{A}/task_manager", {"job_id": "j1"}).data


def test_server_fields_are_written_last(call):
    give_space(A, SPACE_A)
    impostor = {"sender_id": B, "message_type": "CARD_CLICKED_PINNOKIO", "card": {}}
    assert call("FIREBASE_REALTIME.send_realtime_message_structured", A, SPACE_A, "t1", None, "MESSAGE",
                impostor).data is True
    forged = {"sender_id": B, "message_type": "MESSAGE", "action": "other", "job_id": "j1"}
    assert call("FIREBASE_REALTIME.send_speeddial_action", A, SPACE_A, "t1", "TERMINATE", forged).data is True
    messages = list(reference(f"{SPACE_A}/job_chats/t1/messages").get().values())
    assert {m["sender_id"] for m in messages} == {A}
    speeddial = next(m for m in messages if m.get("job_id") == "j1")
    assert speeddial["message_type"] == "SPEEDDIAL" and speeddial["action"] == "TERMINATE"

    mandate = give_space(A, SPACE_A)
    extra = {"firebase_user_id": B, "mandate_path": "clients/x/bo_clients/y/mandates/z", "note": "kept"}
    assert call("FIREBASE_MANAGEMENT.create_telegram_user", A, mandate, "alice_tg", extra).data is True
    entry = get_firestore().document("telegram_users/alice_tg").get().to_dict()["authorized_mandates"][mandate]
    assert (entry["firebase_user_id"], entry["mandate_path"], entry["note"]) == (A, mandate, "kept")

    job = {"user_id": B, "mandate_path": "clients/x/bo_clients/y/mandates/z", "cron": "daily"}
    assert call("FIREBASE_MANAGEMENT.save_scheduler_job", mandate, "daily", job).data is True
    [stored] = [s.to_dict() for s in get_firestore().collection("scheduler").stream()]
    assert (stored["user_id"], stored["mandate_path"], stored["cron"]) == (A, mandate, "daily")


def test_a_scheduler_job_is_deleted_by_its_stored_owner_not_by_an_id_prefix(call):
    victim = "a_bo_clients_x"  # A's uid "a" makes B's job id start with A's prefix
    path = give_space(victim, SPACE_B)
    job_id = f"{path.replace('/', '_')}_daily"
    get_firestore().document(f"scheduler/{job_id}").set({"mandate_path": path, "user_id": victim})
    assert call("FIREBASE_MANAGEMENT.delete_scheduler_job_completely", job_id, "a", uid="a").code == "PERMISSION_DENIED"
    assert get_firestore().document(f"scheduler/{job_id}").get().exists


def test_beta_access_is_staff_s_to_grant(call):
    request = {"email": "new@example.com", "name": "New"}
    assert call("FIREBASE_MANAGEMENT.create_or_update_beta_request", {**request, "authorized_access": True}).code == (
        "PERMISSION_DENIED")
    assert not get_firestore().document("beta_request/new@example.com").get().exists
    assert call("FIREBASE_MANAGEMENT.create_or_update_beta_request", request).data is True
    assert get_firestore().document("beta_request/new@example.com").get().to_dict()["authorized_access"] is False


# --- rule 5 (RPC): chat on a space of the acting user ----------------------------------------------------------------
def test_chat_methods_refuse_another_user_s_space_and_direct_messages_need_a_shared_company(call):
    give_space(A, SPACE_A)
    give_space(B, SPACE_B)
    assert call("FIREBASE_REALTIME.create_chat", A, SPACE_B, "spy").code == "PERMISSION_DENIED"
    assert reference(SPACE_B).get() is None
    assert call("FIREBASE_REALTIME.send_direct_message", A, B, {"text": "hi"}).code == "PERMISSION_DENIED"
    assert reference(f"clients/{B}/direct_message_notif").get() is None
    get_firestore().document(f"users/{B}").set({"share_settings": {"company_id": SPACE_A}})
    wait_until(lambda: call("FIREBASE_REALTIME.send_direct_message", A, B, {"text": "hi"}).code is None, timeout=5.0,
               interval=0.2)


# --- rule 7: Chroma ----------------------------------------------------------------------------------------------------
def test_a_collection_is_its_creator_s_or_its_space_s(call):
    name = f"notes_{uuid.uuid4().hex[:8]}"
    assert call("CHROMA_VECTOR.add_documents", name, ["A's secret"], None, ["d1"]).data["documents_added"] == 1
    assert chroma_adapter.get_chroma().get_collection(name, embedding_function=None).metadata == {"gateway_owner": A}
    for method, args in (("get_collection_info", []), ("query_documents", [["secret"]]),
                         ("delete_documents", [None, ["d1"]]), ("add_documents", [["B's"]]),
                         ("register_collection_user", [])):
        args = [B, name, "s1"] if method == "register_collection_user" else [name, *args]
        assert call(f"CHROMA_VECTOR.{method}", *args, uid=B).code == "PERMISSION_DENIED", method
    assert call("CHROMA_VECTOR.get_collection_info", name).data["document_count"] == 1
    assert call("CHROMA_VECTOR.get_collection_info", name, uid=None).code == "PERMISSION_DENIED"


def test_a_space_collection_is_shared_by_the_space_s_users_and_nobody_else_creates_it(call):
    space = f"space_{uuid.uuid4().hex[:8]}"
    give_space(B, space)
    assert call("CHROMA_VECTOR.create_chroma_instance", space).code == "PERMISSION_DENIED"  # A: not A's company
    assert call("CHROMA_VECTOR.add_documents", space, ["B's company"], uid=B).data["documents_added"] == 1
    assert call("CHROMA_VECTOR.get_collection_info", space).code == "PERMISSION_DENIED"
    get_firestore().document(f"users/{A}").set({"share_settings": {"company_id": space}})
    wait_until(lambda: call("CHROMA_VECTOR.get_collection_info", space).code is None, timeout=5.0, interval=0.2)
