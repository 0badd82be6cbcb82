"""Exact money: parsing callers' amounts, reading the original's floats, and no drift over many changes."""
from __future__ import annotations

from decimal import Decimal

import pytest

from billing.documents import Balance
from billing.money import (
    CorruptAmount, format_amount, from_minor_units, parse_top_up_amount, stored_amount, to_minor_units,
)


def test_a_thousand_ten_cent_top_ups_through_the_stored_form_are_exactly_one_hundred() -> None:
    """Each step is what a credit does: read the stored document, add, write the stored fields back."""
    document: dict = {}
    floats = 0.0
    for _ in range(1000):
        credited = Balance.from_document(document).credited(Decimal("0.10"), "chf")
        document = {k: v for k, v in credited.stored_fields("timestamp_topping").items() if isinstance(v, str)}
        floats += 0.10

    assert document["current_balance"] == "100.00"
    assert document["current_topping"] == "100.00"
    assert floats != 100.0  # the original's arithmetic: 99.9999999999986


def test_a_thousand_expenses_and_top_ups_keep_balance_equal_to_topping_minus_expenses() -> None:
    balance = Balance()
    for index in range(1000):
        balance = balance.credited(Decimal("0.07"), "eur").debited(Decimal("0.0123") if index % 2 else Decimal("0.01"))
        balance = Balance.from_document(balance.exact())

    assert balance.current_balance == balance.current_topping - balance.current_expenses
    assert (format_amount(balance.current_topping), format_amount(balance.current_expenses)) == ("70.00", "11.1500")


@pytest.mark.parametrize(("stored", "expected"), [
    (None, "0"), (0, "0"), (12, "12"), ("12.30", "12.30"), (0.1, "0.1"), (0.30000000000000004, "0.30000000000000004"),
    (1e-07, "0.0000001"), (19.99, "19.99"),
])
def test_stored_amounts_of_either_generation_are_read_exactly(stored, expected) -> None:
    assert format_amount(stored_amount(stored, "current_balance")) == expected


@pytest.mark.parametrize("stored", [True, "abc", float("nan"), float("inf"), "Infinity", [1], {"a": 1}])
def test_corrupt_stored_amounts_are_refused_not_guessed(stored) -> None:
    with pytest.raises(CorruptAmount):
        stored_amount(stored, "current_balance")


@pytest.mark.parametrize(("value", "currency", "expected"), [
    ("25", "chf", "25"), (25, "chf", "25"), (19.99, "usd", "19.99"), (" 0.5 ", "eur", "0.5"),
    ("999999.99", "chf", "999999.99"),
    (99999999, "jpy", "99999999"), ("12.34", "kwd", "12.34"),
])
def test_top_up_amounts_are_parsed_exactly(value, currency, expected) -> None:
    assert format_amount(parse_top_up_amount(value, currency)) == expected


@pytest.mark.parametrize(("amount", "currency", "minor"), [
    ("19.99", "usd", 1999), ("0.29", "eur", 29), ("500", "jpy", 500), ("12.34", "kwd", 12340), ("0.01", "chf", 1),
])
def test_minor_units_round_trip(amount, currency, minor) -> None:
    assert to_minor_units(Decimal(amount), currency) == minor
    assert from_minor_units(minor, currency) == Decimal(amount)
