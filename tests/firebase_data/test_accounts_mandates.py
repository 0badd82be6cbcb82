"""Users, clients, customers and mandates, through /rpc against the emulator, on the seeded demo tenant."""
from __future__ import annotations

import datetime as dt

import pytest

from firebase_data.demo_tenant import build_demo_tenant, load_fixture, space_code_for
from core.tenancy import subtree_range

from .conftest import OTHER_UID, UID


@pytest.fixture
def tenant():
    return build_demo_tenant(UID, reference_data=False)


def test_check_and_create_client_document_first_and_later_logins(fm, fsdb):
    user = {"uid": UID, "email": "a@example.com", "displayName": "Alice", "photoUrl": "p.png"}
    assert fm("check_and_create_client_document", user, UID).data is True
    assert fsdb.document(f"users/{UID}").get().to_dict() == {"uid": UID, "email": "a@example.com",
                                                             "displayName": "Alice", "photoURL": "p.png"}
    client = fsdb.document(f"clients/{UID}").get().to_dict()
    assert client["client_email"] == "a@example.com" and isinstance(client["created_at"], dt.datetime)
    assert fsdb.document(f"clients/{UID}/bo_clients/{UID}").get().to_dict()["client_uuid"].startswith("client_")

    assert fm("check_and_create_client_document", {**user, "displayName": "Alice B"}, UID).data is False
    assert fsdb.document(f"users/{UID}").get().to_dict()["displayName"] == "Alice B"
    assert fm("check_and_create_client_document", {**user, "uid": OTHER_UID}, UID).code == "PERMISSION_DENIED"
    assert not fsdb.document(f"users/{OTHER_UID}").get().exists


def test_beta_requests(fm, fsdb):
    assert fm("get_beta_request_by_email", "x@example.com").code == "NOT_FOUND"
    assert fm("create_or_update_beta_request", {"email": "x@example.com", "company": "X"}).data is True
    first = fsdb.document("beta_request/x@example.com").get().to_dict()
    assert first["authorized_access"] is False and isinstance(first["created_at"], dt.datetime)
    fsdb.document("beta_request/x@example.com").update({"authorized_access": True})
    fm("create_or_update_beta_request", {"email": "x@example.com", "company": "X2"})
    stored = fm("get_beta_request_by_email", "x@example.com").data
    assert stored["authorized_access"] is True and stored["company"] == "X2" and stored["id"] == "x@example.com"
    assert fm("create_or_update_beta_request", {"company": "no email"}).code == "INVALID_ARGS"


def test_usermail_and_invitations(fm, fsdb):
    fsdb.document("clients/c1").set({"client_email": "known@example.com"})
    assert fm("check_if_usermail_already_exists", "known@example.com").data is True
    assert fm("check_if_usermail_already_exists", "new@example.com").data is False
    fsdb.document("invitations/i1").set({"invited_by": UID, "email": "b@example.com"})
    fsdb.document("invitations/i2").set({"invited_by": OTHER_UID})
    assert [i["id"] for i in fm("get_invitations_by_inviter", UID).data] == ["i1"]
    assert fm("get_invitations_by_inviter", OTHER_UID).code == "PERMISSION_DENIED"


def test_client_lookups(fm, tenant):
    client = load_fixture()["client"]
    uuid_, drive, path = fm("get_client_data_by_name", UID, client["client_name"]).data
    assert (uuid_, drive, path) == (client["client_uuid"], client["drive_client_parent_id"],
                                    f"clients/{UID}/bo_clients/{client['id']}")
    assert fm("get_client_data_by_name", UID, "Nobody").code == "NOT_FOUND"
    assert fm("get_client_doc", UID, client["client_uuid"]).data == client["id"]
    assert fm("get_client_doc", UID, "client_nope").code == "NOT_FOUND"
    assert fm("check_business_name_existence", UID, client["client_uuid"], "Alpine Trading").data is True
    assert fm("check_business_name_existence", UID, client["client_uuid"], "Nope").data is False
    assert fm("get_client_name_by_business_name", UID, "Lémanic Services").data == [client["client_name"], path]
    assert fm("get_client_name_by_business_name", UID, "Nope").code == "NOT_FOUND"
    assert fm("get_customer_list", UID).data == [client["client_name"]]  # the user's own bo_client is excluded


def test_shared_customers(fm, fsdb, tenant):
    build_demo_tenant(OTHER_UID, reference_data=False)
    shared_space = space_code_for(OTHER_UID, "alpine")
    fsdb.document(f"users/{UID}").update({"share_settings": {"accounts": {"acc1": {"companies": [shared_space]}}}})
    assert fm("get_shared_customers_list", UID).data == ["Demo Fiduciaire SA"]
    assert fm("get_customer_list", UID, True).data == ["Demo Fiduciaire SA"]
    fsdb.document(f"users/{UID}").update({"share_settings": {}})
    assert fm("get_shared_customers_list", UID).data == []


def test_fetch_all_mandates_shape_and_isolation(fm, fsdb, tenant):
    build_demo_tenant(OTHER_UID, reference_data=False)  # another tenant's mandates must never appear
    mandates = fm("fetch_all_mandates", UID).data
    assert sorted(m["id"] for m in mandates) == ["mandate_alpine", "mandate_lemanic", "mandate_provence"]
    alpine = next(m for m in mandates if m["id"] == "mandate_alpine")
    assert alpine["legal_name"] == "Alpine Trading Sàrl" and alpine["contact_space_id"] == tenant.space_codes[0]
    assert alpine["parent_details"]["client_name"] == "Demo Fiduciaire SA"
    assert alpine["parent_details"]["parent_doc_id"] == "client_demo"
    assert alpine["workflow_params"]["Banker_param"]["banker_approval_thresholdworkflow"] == 1000
    assert alpine["erp_details"]["odoo"]["odoo_db"] == "alpine_prod"
    assert alpine["context_details"]["accounting_context"] == {"vat_regime": "effective", "fiscal_year_end": "12-31"}
    assert alpine["context_details"]["general_context"].startswith("Alpine Trading Sàrl is a demo company")

    fsdb.document(tenant.mandate_paths[2]).update({"isactive": False})
    assert len(fm("fetch_all_mandates", UID).data) == 2
    assert fm("fetch_all_mandates", "user_nobody", uid="user_nobody").data == []


def test_fetch_all_mandates_reads_a_constant_number_of_times(fm, tenant, monkeypatch):
    """No N+1: the number of Firestore round trips does not grow with the number of mandates."""
    from google.cloud.firestore_v1 import client as client_module, query as query_module

    calls = {"get_all": 0, "stream": 0}
    real_get_all, real_stream = client_module.Client.get_all, query_module.Query.stream

    def counting_get_all(self, *args, **kwargs):
        calls["get_all"] += 1
        return real_get_all(self, *args, **kwargs)

    def counting_stream(self, *args, **kwargs):
        calls["stream"] += 1
        return real_stream(self, *args, **kwargs)

    monkeypatch.setattr(client_module.Client, "get_all", counting_get_all)
    monkeypatch.setattr(query_module.Query, "stream", counting_stream)
    assert len(fm("fetch_all_mandates", UID).data) == 3
    assert calls == {"get_all": 1, "stream": 3}


def test_subtree_range_excludes_prefix_siblings(fsdb):
    for uid in ("u1", "u10", "u1x"):
        fsdb.document(f"clients/{uid}/bo_clients/c/mandates/m").set({"x": 1})
    paths = [s.reference.path for s in subtree_range(fsdb.collection_group("mandates"), "u1").stream()]
    assert paths == ["clients/u1/bo_clients/c/mandates/m"]


def test_single_mandate_summary_and_erp(fm, tenant):
    path = tenant.mandate_paths[1]
    single = fm("fetch_single_mandate", path).data
    assert single["id"] == "mandate_lemanic" and single["erp_details"]["odoo"]["erp_type"] == "odoo"
    assert fm("fetch_single_mandate", f"clients/{UID}/bo_clients/client_demo/mandates/nope").code == "NOT_FOUND"
    assert fm("fetch_single_mandate", f"clients/{UID}/notifications/x").code == "INVALID_ARGS"
    assert fm("fetch_single_mandate", path.replace(UID, OTHER_UID)).code == "PERMISSION_DENIED"

    summary = fm("fetch_all_mandates_summary", UID).data
    assert summary["Provence Import SAS"] == {"contact_space": "Provence Import", "mandate_path": tenant.mandate_paths[2],
                                              "client_name": "Demo Fiduciaire SA"}
    erp = fm("get_erp_path", path, "odoo").data
    assert erp["id"] == "odoo" and erp["odoo_url"] == "https://lemanic.odoo.example"
    assert fm("get_erp_path", path, "sap").code == "NOT_FOUND"


def test_function_table_and_departments(fm, fsdb, tenant):
    path = tenant.mandate_paths[0]
    assert fm("get_departments_list", path).data == [
        "Banks_cash", "Contrats", "Expenses", "Hr", "Invoices", "Letters", "Taxes"]
    fresh = f"clients/{UID}/bo_clients/client_demo/mandates/new_one"
    assert fm("get_departments_list", fresh).data[0] == "Banks_cash"  # created with the defaults, as before
    assert fsdb.document(f"{fresh}/setup/function_table").get().to_dict()["INVOICES"]["drive_service"] == "AP"
    fsdb.document(f"{path}/setup/function_table").set({"INVOICES": {"is_active": False}})
    assert fm("set_firebase_function_table", path).data is True
    assert fsdb.document(f"{path}/setup/function_table").get().to_dict()["INVOICES"]["drive_service"] == "AP"


def test_onboarding_temp_mandate(fm, fsdb):
    path = f"clients/{UID}/onboarding/temp"
    fsdb.document(path).set({"base_info": {"business_name": "", "company_name": "NewCo"}})
    assert fm("get_onboarding_temp_mandate", path).data == "NewCo"
    assert fm("get_onboarding_temp_mandate", f"clients/{UID}/onboarding/none").code == "NOT_FOUND"


def _tree(fsdb, path):
    """Paths of every document below ``path`` (any depth)."""
    return sorted(s.reference.path for c in fsdb.document(path).collections() for s in c.recursive().stream())


def test_delete_client_mandate_removes_the_whole_mandate_tree(fm, fsdb, tenant):
    build_demo_tenant(OTHER_UID, reference_data=False)
    alpine = tenant.mandate_paths[0]
    fsdb.document(f"{alpine}/billing/topping/transactions/t1").set({"amount": "10.00"})  # below a missing document
    assert len(_tree(fsdb, alpine)) > 3
    assert fm("delete_client_mandate", UID, "Demo Fiduciaire SA", "Alpine Trading").data is True
    assert not fsdb.document(alpine).get().exists and _tree(fsdb, alpine) == []
    assert sorted(m["id"] for m in fm("fetch_all_mandates", UID).data) == ["mandate_lemanic", "mandate_provence"]
    assert _tree(fsdb, tenant.mandate_paths[1])  # its siblings keep their documents
    assert fsdb.document(alpine.replace(UID, OTHER_UID)).get().exists  # the other tenant's copy is untouched

    assert fm("delete_client_mandate", UID, "Demo Fiduciaire SA", "Alpine Trading").code == "NOT_FOUND"
    assert fm("delete_client_mandate", UID, "Nobody", "Lémanic Services").code == "NOT_FOUND"
    assert fm("delete_client_mandate", OTHER_UID, "Demo Fiduciaire SA", "Lémanic Services").code == "PERMISSION_DENIED"
    assert fm("delete_client_mandate", UID, "Demo Fiduciaire SA", 5).code == "INVALID_ARGS"
    assert fsdb.document(tenant.mandate_paths[1]).get().exists


def test_delete_client_if_no_mandates(fm, fsdb, tenant):
    client = f"clients/{UID}/bo_clients/client_demo"
    refused = fm("delete_client_if_no_mandates", UID, "Demo Fiduciaire SA").data
    assert refused == [False, "This client has mandates. Please delete the associated mandate(s) first before "
                              "deleting the client."]
    assert fsdb.document(client).get().exists and len(list(fsdb.collection(f"{client}/mandates").stream())) == 3

    empty = f"clients/{UID}/bo_clients/client_empty"
    fsdb.document(empty).set({"client_name": "Empty Co"})
    batch = fsdb.batch()
    for index in range(499):  # with the two below: more than one transaction can hold
        batch.set(fsdb.document(f"{empty}/notes/n{index:03d}"), {"i": index})
    batch.commit()
    fsdb.document(f"{empty}/notes/n999/replies/r1").set({"text": "nested"})
    fsdb.document(f"{empty}/mandates/ghost/erp/odoo").set({"erp_type": "odoo"})  # under a missing mandate document
    assert fm("delete_client_if_no_mandates", UID, "Empty Co").data == [True, "Client deleted successfully."]
    assert not fsdb.document(empty).get().exists and _tree(fsdb, empty) == []
    assert fm("delete_client_if_no_mandates", UID, "Empty Co").code == "NOT_FOUND"
    assert fm("delete_client_if_no_mandates", OTHER_UID, "Demo Fiduciaire SA").code == "PERMISSION_DENIED"
    assert fm("get_customer_list", UID).data == ["Demo Fiduciaire SA"]


def test_delete_client_if_no_mandates_never_orphans_a_new_mandate(fm, fsdb, monkeypatch):
    """A mandate created between the first check and the deletion: the transaction sees it and deletes nothing."""
    from firebase_data import mandates as mandates_module

    client = f"clients/{UID}/bo_clients/client_race"
    fsdb.document(client).set({"client_name": "Race Co"})
    real_descendants = mandates_module.descendants

    def descendants_then_a_mandate_appears(ref):
        found = real_descendants(ref)
        fsdb.document(f"{client}/mandates/m_new").set({"contact_space_name": "New"})
        return found

    monkeypatch.setattr(mandates_module, "descendants", descendants_then_a_mandate_appears)
    assert fm("delete_client_if_no_mandates", UID, "Race Co").data[0] is False
    assert fsdb.document(client).get().exists and fsdb.document(f"{client}/mandates/m_new").get().exists
