"""Reference data (settings_param, blogs), Telegram users and scheduler jobs, through /rpc."""
from __future__ import annotations

import datetime as dt

import pytest

from firebase_data.defaults import reference_defaults
from firebase_data.demo_tenant import build_demo_tenant, load_fixture

from .conftest import OTHER_UID, UID


def test_reference_lists_default_then_stored(fm, fsdb):
    defaults = reference_defaults()
    assert fm("load_dms_types").data == defaults["dms_types"]
    assert fm("load_param_data", "communication").data == defaults["communication_types"]
    assert len(fm("get_all_currencies").data) == 27
    fsdb.document("settings_param/erp_type").set({"erp_types": [{"id": "9", "erp_displayname": "Bexio", "erp_name": "bexio"}]})
    assert fm("load_erp_types").data == [{"id": "9", "erp_displayname": "Bexio", "erp_name": "bexio"}]
    assert fm("get_param_data", "erp").data[0]["erp_name"] == "bexio"
    assert fm("load_chat_types").data == defaults["chat_types"]
    assert fm("load_currencies").data == defaults["currencies"]
    assert fm("get_param_data", "nope").code == "INVALID_ARGS"
    assert not fsdb.document("settings_param/dms_type").get().exists  # reading never writes


def test_countries_languages_and_legal_forms(fm):
    build_demo_tenant(UID)  # includes the reference data
    names, ids = fm("get_countries_list").data
    assert names == ["France", "Switzerland"] and ids == {"France": 2, "Switzerland": 1}
    assert fm("get_legal_forms_for_country", "Switzerland", ids).data == [
        "RI - Raison individuelle", "SA - Société anonyme", "Sàrl - Société à responsabilité limitée"]
    assert fm("get_legal_forms_for_country", "Narnia", ids).data == []
    assert set(fm("download_all_languages").data) == set(load_fixture()["languages"])


def test_account_type_spec_and_blogs(fm, fsdb):
    fsdb.document("settings_param/coa_mapping_settings/erp/odoo/Switzerland/account_type_definition").set(
        {"expense_direct_cost": "Direct costs of sales"})
    assert fm("download_account_type_spec", "odoo", "Switzerland", "expense_direct_cost").data == [
        True, "Direct costs of sales"]
    assert fm("download_account_type_spec", "odoo", "Switzerland", "other").code == "NOT_FOUND"
    assert fm("download_account_type_spec", "odoo", "../x", "other").code == "INVALID_ARGS"

    fsdb.document("blogs/first").set({"title": "First", "date": dt.datetime(2025, 1, 2, tzinfo=dt.timezone.utc)})
    fsdb.document("blogs/second").set({"title": "Second", "date": dt.datetime(2025, 3, 4, tzinfo=dt.timezone.utc)})
    assert [(b["slug"], b["date"]) for b in fm("fetch_all_blogs", 10).data] == [
        ("second", "March 04, 2025"), ("first", "January 02, 2025")]
    assert fm("fetch_blog_by_slug", "first").data["title"] == "First"
    assert fm("fetch_blog_by_slug", "none").code == "NOT_FOUND"


@pytest.fixture
def mandates():
    return build_demo_tenant(UID, reference_data=False).mandate_paths


def test_telegram_users_lifecycle(fm, fsdb, mandates):
    first, second = mandates[0], mandates[1]
    assert fm("create_telegram_user", UID, first, "alice_tg", {"role": "cfo"}).data is True
    assert fm("create_telegram_user", UID, first, "alice_tg").data is False  # already authorized there
    assert fm("create_telegram_user", UID, second, "alice_tg").data is True
    stored = fsdb.document("telegram_users/alice_tg").get().to_dict()
    assert set(stored["authorized_mandates"]) == {first, second} and stored["is_active"] is True
    assert stored["authorized_mandates"][first]["role"] == "cfo"

    # another tenant authorizes the same Telegram user: neither sees the other's mandates
    other = build_demo_tenant(OTHER_UID, reference_data=False).mandate_paths[0]
    assert fm("create_telegram_user", OTHER_UID, other, "alice_tg", uid=OTHER_UID).data is True
    [mine] = fm("get_telegram_users", UID).data
    assert mine["doc_id"] == "alice_tg" and set(mine["authorized_mandates"]) == {first, second}
    assert [u["doc_id"] for u in fm("get_telegram_users", UID, second).data] == ["alice_tg"]
    assert fm("is_telegram_user_authorized", "alice_tg", first).data is True
    assert fm("create_telegram_user", UID, other, "x").code == "PERMISSION_DENIED"

    fsdb.document(first).update({"telegram_auth_users": ["alice_tg", "bob_tg"],
                               "telegram_users_mapping": {"alice_tg": {"chat": 1}}})
    assert fm("delete_telegram_user", "alice_tg", first).data is True
    mandate = fsdb.document(first).get().to_dict()
    assert mandate["telegram_auth_users"] == ["bob_tg"] and mandate["telegram_users_mapping"] == {}
    assert fm("is_telegram_user_authorized", "alice_tg", first).data is False
    assert fm("delete_telegram_user", "alice_tg", first).code == "NOT_FOUND"
    fm("delete_telegram_user", "alice_tg", second)
    assert set(fsdb.document("telegram_users/alice_tg").get().to_dict()["authorized_mandates"]) == {other}


def test_scheduler_jobs(fm, fsdb, mandates):
    path = mandates[0]
    job_id = f"{path.replace('/', '_')}_apbookeeper"
    assert fm("save_scheduler_job", path, "apbookeeper", {"cron": "0 6 * * *"}).data is True
    stored = fsdb.document(f"scheduler/{job_id}").get().to_dict()
    assert stored["enabled"] is True and stored["cron"] == "0 6 * * *" and isinstance(stored["created_at"], dt.datetime)
    assert fm("disable_scheduler_job", path, "apbookeeper").data is True
    assert fsdb.document(f"scheduler/{job_id}").get().to_dict()["enabled"] is False
    assert fm("disable_scheduler_job", path, "router").code == "NOT_FOUND"
    assert fm("delete_scheduler_job_completely", job_id.replace(UID, OTHER_UID), UID).code == "PERMISSION_DENIED"
    assert fm("delete_scheduler_job_completely", job_id, UID).data is True
    assert not fsdb.document(f"scheduler/{job_id}").get().exists
