"""The seeded demo tenant (``manage.py seed_demo``), checked through the same RPC methods the Reflex app calls."""
from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from firebase_data.demo_tenant import JOB_COUNT, build_demo_tenant
from core.integrations.rtdb import reference
from rpc.registry import all_methods

from .conftest import UID


def _seed(*args: str) -> dict:
    out = io.StringIO()
    call_command("seed_demo", "--uid", UID, "--json", *args, stdout=out)
    return json.loads(out.getvalue())


def test_seed_demo_is_idempotent_and_reports_json(fsdb):
    first = _seed()
    assert first["uid"] == UID and first["jobs"] == JOB_COUNT and len(first["mandate_paths"]) == 3
    assert first["unread_notifications"] == 17 and first["chat_threads"] == 12 and first["direct_messages"] == 5
    reference(f"{first['space_codes'][0]}/chats/demo_alpine_1/messages").push({"content": "added by the user"})

    assert _seed() == first
    assert len(list(fsdb.collection(f"clients/{UID}/notifications").stream())) == JOB_COUNT
    assert len(list(fsdb.collection(f"clients/{UID}/task_manager").stream())) == JOB_COUNT
    assert len(reference(f"clients/{UID}/direct_message_notif").get()) == 5
    messages = reference(f"{first['space_codes'][0]}/chats/demo_alpine_1/messages").get()
    assert len(messages) == 4  # the 3 demo messages, rewritten in place, and the user's own


def test_seed_demo_text_output_and_bad_uid():
    out = io.StringIO()
    call_command("seed_demo", "--uid", "someone", "--skip-reference-data", stdout=out)
    assert "Seeded someone: 3 mandates, 50 jobs" in out.getvalue()
    with pytest.raises(CommandError):
        call_command("seed_demo", "--uid", "../x", stdout=io.StringIO())


def test_a_new_user_sees_real_data_through_rpc(fm, frt):
    summary = build_demo_tenant(UID)
    unread = fm("get_unread_notifications", UID, 100).data
    assert len(unread) == summary.unread_notifications
    assert unread == sorted(unread, key=lambda n: n["timestamp"], reverse=True)
    assert {"job_id", "file_name", "status", "collection_id", "function_name", "timestamp"} <= unread[0].keys()
    assert len(fm("fetch_all_mandates", UID).data) == 3

    job = summary.job_ids[0]
    assert fm("download_document_to_task_job_id", UID, job).data["initial_data"]["invoiceReference"].startswith("INV-")
    assert fm("download_invoice_step", UID, job).data == {
        "DOCUMENT_EXTRACTION": 1, "CONTACT_CHECK": 1, "BOOKING": 1, "ARCHIVE": 1}

    space = summary.space_codes[0]
    threads = frt("get_all_threads", space, "chats").data
    assert sorted(t["thread_name"] for t in threads.values()) == ["Month-end closing", "VAT questions"]
    assert [m["content"][:7] for m in frt("get_channel_messages", space, "demo_alpine_1", 2, "chats").data] == [
        "Sure — ", "Thanks,"]
    assert frt("get_all_threads", space, "job_chats").data[job]["message_count"] == 1
    assert len(frt("get_unread_direct_messages", UID).data) == 5
    open_entries = fm("fetch_journal_entries", UID, space, "APbookeeper").data
    assert open_entries and all(e["path"].startswith(f"clients/{UID}/klk_vision/") for e in open_entries)


def test_method_catalogue_is_served_with_signatures(service_token):
    response = Client().get("/rpc/methods", HTTP_AUTHORIZATION=f"Bearer {service_token}")
    assert response.status_code == 200
    methods = {m["method"]: m for m in json.loads(response.content)["data"]["methods"]}
    create_chat = methods["FIREBASE_REALTIME.create_chat"]
    assert [p["name"] for p in create_chat["params"]] == [
        "user_id", "space_code", "thread_name", "mode", "chat_mode", "thread_key"]
    assert create_chat["writes"] is True and create_chat["scoped_by"] == ["user_id"]
    assert methods["FIREBASE_MANAGEMENT.add_or_update_job_by_job_id"]["scoped_by"] == ["collection_path"]


def test_method_catalogue_keeps_dangerous_methods_out():
    names = {spec.full_name for spec in all_methods()}
    assert "FIREBASE_MANAGEMENT.add_or_update_job_by_job_id" in names
    assert "FIREBASE_REALTIME.create_chat" in names
    forbidden = {
        "FIREBASE_MANAGEMENT.set_document", "FIREBASE_MANAGEMENT.get_document", "FIREBASE_MANAGEMENT.delete_doc_id",
        "FIREBASE_MANAGEMENT.delete_document_recursive", "FIREBASE_MANAGEMENT.user_app_permission_token",
        "FIREBASE_MANAGEMENT.get_all_users", "FIREBASE_MANAGEMENT.check_if_users_exist",
        "FIREBASE_MANAGEMENT.download_file_from_storage",
        "FIREBASE_MANAGEMENT.watch_invoice_changes", "FIREBASE_REALTIME.delete_space",
        "FIREBASE_REALTIME.listen_direct_messages", "FIREBASE_REALTIME.watch_chat",
    }
    assert not forbidden & names
    firebase = [s for s in all_methods() if s.namespace in ("FIREBASE_MANAGEMENT", "FIREBASE_REALTIME")]
    assert all(spec.doc for spec in firebase)
    # every method is scoped by a user or a path, except the deliberate global/space-addressed ones
    unscoped = sorted(s.name for s in firebase if not s.describe()["scoped_by"])
    assert unscoped == sorted([
        "check_if_usermail_already_exists", "create_or_update_beta_request", "delete_chat", "download_account_type_spec",
        "download_all_languages", "erase_chat", "fetch_all_blogs", "fetch_blog_by_slug", "get_all_currencies",
        "get_all_threads", "get_beta_request_by_email", "get_channel_messages", "get_countries_list",
        "get_folder_ids_from_fetched_details", "get_legal_forms_for_country", "get_param_data", "load_chat_types",
        "load_currencies", "load_dms_types", "load_erp_types", "load_param_data", "rename_chat",
        "transforme_audit_report_in_text",
    ])
