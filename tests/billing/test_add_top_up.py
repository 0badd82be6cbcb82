"""FIREBASE_MANAGEMENT.add_top_up: validates, records a pending transaction, opens a Checkout, credits nothing."""
from __future__ import annotations

import pytest

from core.integrations.firebase import get_firestore

from .conftest import CANCEL_URL, MANDATE_PATH, OTHER_UID, SUCCESS_URL, UID, firestore_dump, stored_balance


def _transactions() -> list[dict]:
    collection = get_firestore().collection(f"{MANDATE_PATH}/billing/topping/transactions")
    return [snapshot.to_dict() for snapshot in collection.stream()]


def test_add_top_up_records_a_pending_transaction_and_returns_the_checkout_url(fm, mandate, stripe_fake) -> None:
    result = fm("add_top_up", mandate, {"currency": "CHF", "amount": "25.50"})

    data = result.data
    assert data["success"] is True
    session = stripe_fake.sessions[data["session_id"]]
    assert data["checkout_url"] == session["url"]
    [transaction] = _transactions()
    assert transaction["transaction_id"] == data["transaction_id"]
    assert transaction["status"] == "pending"
    assert (transaction["amount"], transaction["amount_minor"], transaction["currency"]) == ("25.50", 2550, "chf")
    assert transaction["stripe_session_id"] == session["id"]
    # What Stripe was asked for: the exact minor units, our metadata, the configured return URLs.
    assert (session["amount_total"], session["currency"]) == (2550, "chf")
    assert session["metadata"] == {
        "user_id": UID, "mandate_path": MANDATE_PATH, "transaction_id": data["transaction_id"],
        "transaction_path": f"{MANDATE_PATH}/billing/topping/transactions/{data['transaction_id']}",
        "payment_type": "top_up",
    }
    assert session["success_url"] == f"{SUCCESS_URL}?session_id={{CHECKOUT_SESSION_ID}}"
    assert session["cancel_url"] == CANCEL_URL
    [request] = stripe_fake.requests
    assert request.headers["Idempotency-Key"] == f"top_up:{data['transaction_id']}"
    # Starting a payment credits nothing.
    assert stored_balance() == {}


@pytest.mark.parametrize(("amount", "currency", "minor"), [
    (19.99, "usd", 1999),  # the original sent int(19.99 * 100) == 1998
    (0.29, "eur", 29),  # int(0.29 * 100) == 28
    (5, "chf", 500),
    ("1234.5", "chf", 123450),
    (500, "jpy", 500),  # zero-decimal currency: no cents
    ("12.34", "kwd", 12340),  # three-decimal currency: thousandths
])
def test_amounts_reach_stripe_in_exact_minor_units(fm, mandate, stripe_fake, amount, currency, minor) -> None:
    data = fm("add_top_up", mandate, {"currency": currency, "amount": amount}).data

    assert stripe_fake.sessions[data["session_id"]]["amount_total"] == minor
    assert _transactions()[0]["amount_minor"] == minor


@pytest.mark.parametrize("top_up_data", [
    {"currency": "chf"},
    {"amount": "10"},
    {"currency": "chf", "amount": True},
    {"currency": "chf", "amount": 0},
    {"currency": "chf", "amount": -5},
    {"currency": "chf", "amount": "-5"},
    {"currency": "chf", "amount": "10.001"},
    {"currency": "chf", "amount": "1e3"},
    {"currency": "chf", "amount": "NaN"},
    {"currency": "chf", "amount": " "},
    {"currency": "chf", "amount": [10]},
    {"currency": "chf", "amount": "1000000"},  # above Stripe's eight digits of minor units
    {"currency": "chf", "amount": "1" * 40},
    {"currency": "jpy", "amount": "100.5"},
    {"currency": "francs", "amount": "10"},
    {"currency": "c1f", "amount": "10"},
    {"currency": 756, "amount": "10"},
])
def test_invalid_top_up_data_is_refused_before_anything_is_written(fm, mandate, stripe_fake, top_up_data) -> None:
    before = firestore_dump()

    result = fm("add_top_up", mandate, top_up_data)

    assert result.code == "INVALID_ARGS", result.body
    assert firestore_dump() == before
    assert stripe_fake.requests == []


def test_a_mandate_of_another_user_is_refused(fm, stripe_fake) -> None:
    other = f"clients/{OTHER_UID}/bo_clients/c/mandates/m"
    get_firestore().document(other).set({"legal_name": "Bob"})

    assert fm("add_top_up", other, {"currency": "chf", "amount": "10"}).code == "PERMISSION_DENIED"
    assert stripe_fake.requests == []


@pytest.mark.parametrize("path", [f"clients/{UID}/bo_clients/c", f"clients/{UID}/billing/current_balance"])
def test_a_path_that_is_not_a_mandate_is_invalid(fm, path) -> None:
    assert fm("add_top_up", path, {"currency": "chf", "amount": "10"}).code == "INVALID_ARGS"


def test_a_missing_mandate_is_not_found(fm, stripe_fake) -> None:
    assert fm("add_top_up", MANDATE_PATH, {"currency": "chf", "amount": "10"}).code == "NOT_FOUND"
    assert _transactions() == []
    assert stripe_fake.requests == []


def test_without_a_stripe_key_nothing_is_written_or_credited(fm, mandate, settings) -> None:
    settings.STRIPE_SECRET_KEY = ""
    before = firestore_dump()

    result = fm("add_top_up", mandate, {"currency": "chf", "amount": "10"})

    assert result.code == "UNAVAILABLE"
    assert "not configured" in result.body["error"]["message"]
    assert firestore_dump() == before


def test_stripe_refusing_the_session_is_invalid_args_and_closes_the_transaction(fm, mandate, stripe_fake) -> None:
    stripe_fake.fail_next(400, "invalid_request_error")

    result = fm("add_top_up", mandate, {"currency": "chf", "amount": "10"})

    assert result.code == "INVALID_ARGS"
    assert "injected" not in result.body["error"]["message"]  # Stripe's text stays in our log
    [transaction] = _transactions()
    assert (transaction["status"], transaction["error_code"]) == ("error", "INVALID_ARGS")
    assert stored_balance() == {}


def test_stripe_unreachable_is_unavailable(fm, mandate, settings) -> None:
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # discard port: connection refused

    result = fm("add_top_up", mandate, {"currency": "chf", "amount": "10"})

    assert result.code == "UNAVAILABLE"
    assert result.body["error"]["retry_after_ms"] > 0
    assert _transactions()[0]["status"] == "error"
    assert stored_balance() == {}


def test_a_wrong_stripe_key_is_internal_not_the_callers_fault(fm, mandate, settings) -> None:
    settings.STRIPE_SECRET_KEY = "sk_test_wrong"

    result = fm("add_top_up", mandate, {"currency": "chf", "amount": "10"})

    assert result.code == "INTERNAL"
    assert "sk_test" not in result.raw.decode()


def test_a_balance_kept_in_one_currency_refuses_top_ups_in_another(fm, mandate, stripe_fake) -> None:
    get_firestore().document(f"clients/{UID}/billing/current_balance").set({"current_balance": "5", "currency": "chf"})

    result = fm("add_top_up", mandate, {"currency": "eur", "amount": "10"})

    assert result.code == "INVALID_ARGS"
    assert "CHF" in result.body["error"]["message"]
    assert stripe_fake.requests == []


def test_add_top_up_requires_an_idempotency_key(rpc, mandate) -> None:
    result = rpc("FIREBASE_MANAGEMENT.add_top_up", mandate, {"currency": "chf", "amount": "10"}, user_id=UID)

    assert (result.status, result.code) == (400, "INVALID_REQUEST")
    assert _transactions() == []
