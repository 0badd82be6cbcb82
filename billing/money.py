"""Exact money: ``Decimal`` in memory, decimal strings in Firestore, integer minor units at Stripe.

The original stored balances and amounts as floats and added them with ``+=``: a thousand top-ups of 0.10 came to
99.99999999999986. Here every amount is a ``Decimal`` from the moment it is read, and is written back as a plain
decimal string (``"12.30"``, never an exponent). Strings keep old readers working (``float("12.30")`` still parses)
and are exact. Floats left in documents by the original are read through their shortest repr
(``Decimal(str(0.1)) == Decimal("0.1")``), the value the original meant, not the binary approximation.
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from core.errors import InvalidArgs

# Stripe charges these in whole units (docs.stripe.com/currencies#zero-decimal) ...
ZERO_DECIMAL_CURRENCIES = frozenset(
    "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split()
)
# ... and these in thousandths, where Stripe requires the last digit to be 0 (so at most 2 decimals from a user).
THREE_DECIMAL_CURRENCIES = frozenset("bhd jod kwd omr tnd".split())
# Stripe's ceiling for one amount: eight digits of minor units.
MAX_MINOR_UNITS = 99_999_999

ZERO = Decimal("0")
_CURRENCY_RE = re.compile(r"^[A-Za-z]{3}$")
_PLAIN_DECIMAL_RE = re.compile(r"^[0-9]+(\.[0-9]+)?$")


class CorruptAmount(ValueError):
    """A stored amount that is not a finite number: a data problem to fix, never to guess around."""


def minor_unit_exponent(currency: str) -> int:
    if currency in ZERO_DECIMAL_CURRENCIES:
        return 0
    if currency in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def to_minor_units(amount: Decimal, currency: str) -> int:
    return int(amount.scaleb(minor_unit_exponent(currency)))


def from_minor_units(units: int, currency: str) -> Decimal:
    return Decimal(units).scaleb(-minor_unit_exponent(currency))


def stored_amount(value: Any, field: str) -> Decimal:
    """Read an amount from a document: decimal strings (ours), ints and floats (the original's), missing as zero."""
    if value is None:
        return ZERO
    if isinstance(value, bool):
        raise CorruptAmount(f"{field} is a boolean")
    try:
        amount = Decimal(str(value)) if isinstance(value, (int, float, str)) else None
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite():
        raise CorruptAmount(f"{field} is not a finite number")
    return amount


def format_amount(amount: Decimal) -> str:
    """The stored form: plain positional notation, exactly the Decimal's digits (``1E-7`` becomes ``0.0000001``)."""
    return format(amount, "f")


def parse_currency(value: Any) -> str:
    if not isinstance(value, str) or not _CURRENCY_RE.match(value):
        raise InvalidArgs("top_up_data.currency must be a three-letter ISO 4217 code, e.g. 'chf'")
    return value.lower()


def parse_top_up_amount(value: Any, currency: str) -> Decimal:
    """A caller's amount: a positive JSON number or decimal string, no more decimals than the currency has cents."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidArgs("top_up_data.amount must be a number or a decimal string")
    text = value.strip() if isinstance(value, str) else str(value)
    if not _PLAIN_DECIMAL_RE.match(text):
        raise InvalidArgs("top_up_data.amount must be a positive decimal number such as 25 or 19.90")
    amount = Decimal(text)
    if amount <= 0:
        raise InvalidArgs("top_up_data.amount must be greater than 0")
    if amount > from_minor_units(MAX_MINOR_UNITS, currency):
        raise InvalidArgs("top_up_data.amount is larger than a single payment can be")
    decimals = min(minor_unit_exponent(currency), 2)
    if amount != amount.quantize(Decimal(1).scaleb(-decimals)):
        raise InvalidArgs(f"top_up_data.amount has more than {decimals} decimals for {currency.upper()}")
    return amount
