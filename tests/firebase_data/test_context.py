"""Mandate context documents (general / accounting / COA), through /rpc on the seeded demo tenant."""
from __future__ import annotations

import pytest

from firebase_data.demo_tenant import build_demo_tenant

from .conftest import OTHER_UID, UID

CLIENT_UUID = "client_demo01"


@pytest.fixture
def tenant():
    return build_demo_tenant(UID, reference_data=False)


@pytest.fixture
def space(tenant):
    return tenant.space_codes[0]


@pytest.fixture
def context_doc(fsdb, tenant):
    return lambda name: fsdb.document(f"{tenant.mandate_paths[0]}/context/{name}").get().to_dict()


def test_unknown_client_or_space_is_not_found(fm, space):
    assert fm("download_general_context_init", UID, "client_nope", space).code == "NOT_FOUND"
    assert fm("download_general_context_init", UID, CLIENT_UUID, "space_nope").code == "NOT_FOUND"
    assert fm("download_general_context_init", OTHER_UID, CLIENT_UUID, space).code == "PERMISSION_DENIED"


def test_general_context_round_trips(fm, space, context_doc):
    assert fm("download_general_context_ai_summary", UID, CLIENT_UUID, space).data.startswith("Alpine Trading")
    assert fm("upload_company_profile_report", UID, CLIENT_UUID, space, "New profile").data is True
    assert context_doc("general_context")["context_company_profile_report"] == "New profile"

    topics = {"0": {"target": "Activity", "questions": ["What?", ""], "tips": [None, "tip"]},
              "1": {"target": "Banks", "questions": [], "tips": []}}
    assert fm("upload_general_context_init_topics_q_a", UID, CLIENT_UUID, space, topics).data is True
    stored = fm("download_general_context_init", UID, CLIENT_UUID, space).data
    assert stored["0"] == {"target": "Activity", "questions": ["What?"], "tips": ["tip"], "is_done": False,
                           "chat": ["We import and resell goods."]}  # merged into the topic, as before

    assert fm("upload_general_context_on_targets", UID, CLIENT_UUID, space, 1, "review_motivation", "ok").data is True
    assert fm("download_general_context_review", UID, CLIENT_UUID, space, 1).data == "ok"
    assert fm("download_general_context_review", UID, CLIENT_UUID, space, "0").data is None

    for index, line in ((0, "hello"), (1, "banks?"), (1, "UBS")):
        assert fm("upload_general_context_init_chat_with_user", UID, CLIENT_UUID, space, line, index).data is True
    seeded = "We import and resell goods."
    assert fm("download_general_context_chat_with_user", UID, CLIENT_UUID, space, 1).data == [
        seeded, "hello", "banks?", "UBS"]
    assert fm("download_general_context_chat_with_user", UID, CLIENT_UUID, space, 0).data == [seeded, "hello"]
    assert context_doc("general_context")["context_topic_q_a"]["1"]["review_motivation"] == "ok"

    assert fm("upload_general_context_init", UID, CLIENT_UUID, space, "raw text").data is True
    assert context_doc("general_context") == {"content": "raw text"}
    assert fm("download_general_context_ai_summary", UID, CLIENT_UUID, space).data == "raw text"


def test_accounting_and_coa_context(fm, space, context_doc):
    assert fm("download_accounting_context_init", UID, CLIENT_UUID, space).data["vat_regime"] == "effective"
    assert fm("upload_accounting_context_init", UID, CLIENT_UUID, space, {"vat_regime": "flat"}).data
    stored = context_doc("accounting_context")["data"]
    assert stored["accounting_context_0"] == {"vat_regime": "flat"} and "T" in stored["last_refresh"]
    assert fm("get_last_refresh_accounting_context", UID, CLIENT_UUID, space).data == stored["last_refresh"]

    coa = fm("download_accounting_context", UID, CLIENT_UUID, space).data
    assert coa["expenses"]["6000"]["account_name"] == "Rent"
    update = {"expenses": {"6000": {"account_name": "Office rent"}, "6.1": {"account_number": "6100"}}}
    assert fm("upload_coa_context", UID, CLIENT_UUID, space, update).data is True
    stored = context_doc("coa_context")["data"]["expenses"]
    assert stored["6000"] == {"account_number": "6000", "account_name": "Office rent", "account_id": 60,
                              "functions": ["expense"]}
    assert stored["6.1"] == {"account_number": "6100"}  # a dotted key is one field, not a path
    assert fm("upload_coa_context", UID, CLIENT_UUID, space, {"x": {"1": {"account_name": "X"}}}, True).data is True
    assert context_doc("coa_context") == {"data": {"x": {"1": {"account_name": "X"}}}}


def test_missing_accounting_documents(fm, fsdb, tenant, space):
    for name in ("accounting_context", "coa_context"):
        fsdb.document(f"{tenant.mandate_paths[0]}/context/{name}").delete()
    assert fm("download_accounting_context", UID, CLIENT_UUID, space).code == "NOT_FOUND"
    assert fm("download_accounting_context_init", UID, CLIENT_UUID, space).code == "NOT_FOUND"
    assert fm("get_last_refresh_accounting_context", UID, CLIENT_UUID, space).code == "NOT_FOUND"


def test_reconstruct_profile_and_save_context(fm, fsdb, tenant, space):
    profile = fm("reconstruct_full_client_profile", UID, CLIENT_UUID, space).data
    assert profile["client_name"] == "Demo Fiduciaire SA" and profile["mandate_legal_name"] == "Alpine Trading Sàrl"
    assert profile["erp_odoo_db"] == "alpine_prod"

    path = f"{tenant.mandate_paths[0]}/context/router_context"
    assert fm("save_context", path, {"router_prompt": {"invoices": "route invoices"}}).data is True
    assert fsdb.document(path).get().to_dict() == {"router_prompt": {"invoices": "route invoices"}}
    assert fm("save_context", f"clients/{UID}/notifications/x", {"a": 1}).code == "INVALID_ARGS"
    details = fm("fetch_single_mandate", tenant.mandate_paths[0]).data["context_details"]
    assert details["invoices_context"] == "route invoices" and details["hr_context"] == ""


def test_get_folder_ids_from_fetched_details(fm, tenant, space):
    profile = fm("reconstruct_full_client_profile", UID, CLIENT_UUID, space).data
    ids = fm("get_folder_ids_from_fetched_details", profile).data
    assert len(ids) == 22
    assert ids[:7] == ["drive_alpine_input", "drive_alpine_output", space, "Alpine Trading", "Demo Fiduciaire SA",
                       "Alpine Trading Sàrl", CLIENT_UUID]
    assert ids[9] == "drive_alpine_main" and ids[10] == "odoo" and ids[11] == "https://alpine.odoo.example"
    assert ids[14] == "alpine_prod" and ids[15] == "drive_alpine" and ids[17] == profile["mandate_base_currency"]
    assert ids[18:] == ["odoo", "odoo", "odoo", "odoo"]
    assert fm("get_folder_ids_from_fetched_details", {"client_name": "X"}).data[5] == "X"  # legal_name falls back
    assert fm("get_folder_ids_from_fetched_details", ["not", "a", "dict"]).code == "INVALID_ARGS"
