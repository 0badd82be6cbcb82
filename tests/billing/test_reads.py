"""get_user_balance / get_balance_info / get_all_expenses: read only, tenant-scoped; no RPC method credits a balance."""
from __future__ import annotations

import pytest

from core.integrations.firebase import get_firestore
from rpc.registry import all_methods

from .conftest import MANDATE_PATH, OTHER_UID, UID, firestore_dump, stored_balance

EXPENSES = f"{MANDATE_PATH}/billing/topping/expenses"


@pytest.fixture
def legacy_billing_data(mandate) -> None:
    """What the original left: float amounts, a pending (abandoned) top-up and unbilled expenses."""
    db = get_firestore()
    db.document(f"clients/{UID}/billing/current_balance").set(
        {"current_balance": 12.3, "current_topping": 20.0, "current_expenses": 7.7}
    )
    db.document(f"{MANDATE_PATH}/billing/topping/transactions/abandoned").set(
        {"amount": 50.0, "currency": "chf", "status": "pending"}
    )
    db.document(f"{EXPENSES}/job_1").set({"billed": False, "total_sales_price": 1.25})
    db.document(f"{EXPENSES}/job_2").set({"billed": True, "total_sales_price": 0.5})


def test_reading_balances_changes_no_document(fm, legacy_billing_data) -> None:
    before = firestore_dump()

    results = [
        fm("get_user_balance", MANDATE_PATH), fm("get_user_balance", None, UID),
        fm("get_balance_info", MANDATE_PATH), fm("get_balance_info", None, UID),
        fm("get_all_expenses", MANDATE_PATH),
    ]

    assert all(result.body["ok"] for result in results), [r.body for r in results]
    assert firestore_dump() == before  # same documents, same data, same update times


def test_get_user_balance_returns_the_stored_balance_as_a_number(fm, legacy_billing_data) -> None:
    # The original returned 12.3 - 1.25 + 50 here, after crediting the abandoned checkout and billing job_1.
    assert fm("get_user_balance", MANDATE_PATH).data == 12.3
    assert fm("get_user_balance", user_id=UID).data == 12.3  # the original returned None when given only user_id


def test_a_user_without_a_balance_document_has_zero(fm, mandate) -> None:
    assert fm("get_user_balance", MANDATE_PATH).data == 0
    assert fm("get_balance_info", MANDATE_PATH).data == {
        "current_balance": 0.0, "current_expenses": 0.0, "current_topping": 0.0, "currency": None,
        "exact": {"current_balance": "0", "current_topping": "0", "current_expenses": "0", "currency": None},
    }
    assert stored_balance() == {}


def test_get_balance_info_gives_numbers_and_the_exact_decimal_strings(fm, mandate) -> None:
    get_firestore().document(f"clients/{UID}/billing/current_balance").set(
        {"current_balance": "0.30", "current_topping": "100.10", "current_expenses": "99.80", "currency": "chf"}
    )

    assert fm("get_balance_info", MANDATE_PATH).data == {
        "current_balance": 0.3, "current_expenses": 99.8, "current_topping": 100.1, "currency": "chf",
        "exact": {
            "current_balance": "0.30", "current_topping": "100.10", "current_expenses": "99.80", "currency": "chf",
        },
    }


def test_get_all_expenses_returns_the_documents_by_job_id(fm, legacy_billing_data) -> None:
    assert fm("get_all_expenses", MANDATE_PATH).data == {
        "job_1": {"billed": False, "total_sales_price": 1.25},
        "job_2": {"billed": True, "total_sales_price": 0.5},
    }


def test_reads_need_a_user(fm) -> None:
    assert fm("get_user_balance").code == "INVALID_ARGS"
    assert fm("get_balance_info").code == "INVALID_ARGS"


@pytest.mark.parametrize(("method", "args", "kwargs"), [
    ("get_user_balance", [], {"user_id": OTHER_UID}),
    ("get_user_balance", [f"clients/{OTHER_UID}/bo_clients/c/mandates/m"], {}),
    ("get_balance_info", [], {"user_id": OTHER_UID}),
    ("get_all_expenses", [f"clients/{OTHER_UID}/bo_clients/c/mandates/m"], {}),
    ("get_user_balance", [f"clients/{UID}/../{OTHER_UID}/bo_clients/c/mandates/m"], {}),
])
def test_another_users_billing_is_out_of_reach(fm, method, args, kwargs) -> None:
    get_firestore().document(f"clients/{OTHER_UID}/billing/current_balance").set({"current_balance": "4242.42"})

    result = fm(method, *args, **kwargs)

    assert result.code in {"PERMISSION_DENIED", "INVALID_ARGS"}, result.body
    assert "data" not in result.body
    assert "4242" not in result.body["error"]["message"]


@pytest.mark.parametrize("name", [
    "process_immediate_top_up", "x_process_immediate_top_up", "process_stripe_webhook", "retrieve_stripe_session",
    "x_add_top_up", "test_strip",
])
def test_the_originals_crediting_and_unsigned_webhook_methods_do_not_exist(fm, mandate, name) -> None:
    before = firestore_dump()

    result = fm(name, UID, 100.0)

    assert result.code == "METHOD_NOT_FOUND"
    assert firestore_dump() == before


def test_the_billing_methods_registered_are_exactly_these() -> None:
    billing = sorted(spec.full_name for spec in all_methods() if spec.func.__module__ == "billing.rpc_methods")

    assert billing == [
        "FIREBASE_MANAGEMENT.add_top_up", "FIREBASE_MANAGEMENT.get_all_expenses",
        "FIREBASE_MANAGEMENT.get_balance_info", "FIREBASE_MANAGEMENT.get_user_balance",
    ]
    writes = {spec.name: spec.writes for spec in all_methods() if spec.func.__module__ == "billing.rpc_methods"}
    assert writes == {
        "add_top_up": True, "get_all_expenses": False, "get_balance_info": False, "get_user_balance": False,
    }
