"""Debiting expenses (``manage.py bill_expenses`` / ``debit_expense``): each once, atomically with the balance."""
from __future__ import annotations

import json
import threading
from io import StringIO

from django.core.management import call_command

from billing.services import ExpenseOutcome, bill_unbilled_expenses, debit_expense
from core.integrations.firebase import get_firestore

from .conftest import MANDATE_PATH, OTHER_UID, UID, balance_events, stored_balance

EXPENSES = f"{MANDATE_PATH}/billing/topping/expenses"
OTHER_MANDATE = f"clients/{OTHER_UID}/bo_clients/c/mandates/m"


def _expense(path: str, **fields) -> None:
    get_firestore().document(path).set(fields)


def test_bill_expenses_debits_each_unbilled_expense_once_and_marks_it_billed(mandate) -> None:
    get_firestore().document(f"clients/{UID}/billing/current_balance").set(
        {"current_balance": "10.00", "current_topping": "10.00", "current_expenses": "0", "currency": "chf"}
    )
    _expense(f"{EXPENSES}/job_1", billed=False, total_sales_price=1.25)  # a float, as the workers write it
    _expense(f"{EXPENSES}/job_2", billed=False, total_sales_price="0.0123")
    _expense(f"{EXPENSES}/job_3", billed=True, total_sales_price=5)
    _expense(f"{EXPENSES}/job_4", total_sales_price=5)  # no billed flag: the original never billed these either
    _expense(f"{OTHER_MANDATE}/billing/topping/expenses/job_9", billed=False, total_sales_price=2)

    first = bill_unbilled_expenses()
    second = bill_unbilled_expenses()

    assert (first.debited, second.debited) == (3, 0)
    balance = stored_balance()
    assert (balance["current_balance"], balance["current_expenses"], balance["current_topping"]) == (
        "8.7377", "1.2623", "10.00",
    )
    assert stored_balance(OTHER_UID)["current_balance"] == "-2"
    assert get_firestore().document(f"{EXPENSES}/job_1").get().to_dict()["billed"] is True
    assert get_firestore().document(f"{EXPENSES}/job_4").get().to_dict().get("billed") is None
    assert [event["payload"]["reason"] for event in balance_events()] == ["expense", "expense"]
    assert {event["payload"]["job_id"] for event in balance_events()} == {"job_1", "job_2"}
    assert balance_events()[-1]["payload"]["current_balance"] == "8.7377"


def test_debit_expense_twice_concurrently_debits_once(mandate) -> None:
    _expense(f"{EXPENSES}/job_1", billed=False, total_sales_price="3.50")
    outcomes: list[ExpenseOutcome] = []
    start = threading.Barrier(2)

    def run() -> None:
        start.wait()
        outcomes.append(debit_expense(expense_path=f"{EXPENSES}/job_1"))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcome.value for outcome in outcomes) == ["already_billed", "debited"]
    assert stored_balance()["current_balance"] == "-3.50"
    assert len(balance_events()) == 1


def test_expense_collections_outside_a_mandates_billing_are_not_billed(mandate) -> None:
    stray = f"clients/{UID}/klk_vision/dept/expenses/e1"
    _expense(stray, billed=False, total_sales_price=100)

    assert bill_unbilled_expenses().debited == 0
    assert get_firestore().document(stray).get().to_dict()["billed"] is False
    assert stored_balance() == {}


def test_an_expense_with_an_unusable_price_is_left_unbilled(mandate) -> None:
    _expense(f"{EXPENSES}/bad_1", billed=False, total_sales_price="twelve")
    _expense(f"{EXPENSES}/bad_2", billed=False, total_sales_price=-4)

    run = bill_unbilled_expenses()

    assert (run.debited, run.skipped) == (0, {"invalid_price": 2})
    assert stored_balance() == {}
    assert get_firestore().document(f"{EXPENSES}/bad_1").get().to_dict()["billed"] is False


def test_the_management_command_reports_what_it_did(mandate) -> None:
    _expense(f"{EXPENSES}/job_1", billed=False, total_sales_price="2")
    _expense(f"{EXPENSES}/bad", billed=False, total_sales_price="?")
    out = StringIO()

    call_command("bill_expenses", "--json", stdout=out)

    assert json.loads(out.getvalue()) == {"debited": 1, "skipped": {"invalid_price": 1}}
    assert stored_balance()["current_balance"] == "-2"
