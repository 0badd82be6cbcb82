"""Where billing data lives in Firestore, and the balance document's shape.

Layout kept from the original service, which the Reflex app reads as it is:

* ``clients/{uid}/billing/current_balance``: ``current_balance``, ``current_topping``, ``current_expenses`` and the
  timestamps ``last_updated``, ``timestamp_topping``, ``timestamp_expenses``; we add ``currency`` (set by the first
  credited top-up; later top-ups must use it, so one balance never sums two currencies).
* ``{mandate_path}/billing/topping/transactions/{transaction_id}``: one Stripe top-up, ``status`` pending → added
  (or expired / failed / error / needs_review).
* ``{mandate_path}/billing/topping/expenses/{job_id}``: ``total_sales_price``, ``billed`` (written by the workers).

New: ``stripe_events/{event_id}``, the ledger of applied Stripe events: ``state`` (processing while one delivery
applies it, then done), ``outcome``, ``user_id``, ``transaction_path``, ``amount_minor``, ``processed_at``. It is
read and written in the same Firestore transaction as the balance, which is what makes a replayed or concurrently
re-delivered event credit once (see ``stripe_events``).
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1 import DocumentReference

from core.integrations.firebase import get_firestore
from core.errors import InvalidArgs

from .money import ZERO, format_amount, stored_amount

STRIPE_EVENTS_COLLECTION = "stripe_events"
EXPENSES_COLLECTION_ID = "expenses"
_MANDATE_SHAPE = "clients/{uid}/bo_clients/{client}/mandates/{mandate}"


def balance_ref(uid: str) -> DocumentReference:
    return get_firestore().document(f"clients/{uid}/billing/current_balance")


def stripe_event_ref(event_id: str) -> DocumentReference:
    return get_firestore().collection(STRIPE_EVENTS_COLLECTION).document(event_id)


def transactions_path(mandate_path: str) -> str:
    return f"{mandate_path}/billing/topping/transactions"


def expenses_path(mandate_path: str) -> str:
    return f"{mandate_path}/billing/topping/expenses"


def is_mandate_path(path: str) -> bool:
    segments = path.split("/")
    return (
        len(segments) == 6 and segments[0] == "clients" and segments[2] == "bo_clients" and segments[4] == "mandates"
        and all(segments)
    )


def require_mandate_path(name: str, path: str) -> str:
    clean = path.strip("/")
    if not is_mandate_path(clean):
        raise InvalidArgs(f"{name} must be {_MANDATE_SHAPE}")
    return clean


def owner_of(path: str) -> str:
    """The uid of a ``clients/{uid}/...`` path (callers have checked the shape)."""
    return path.strip("/").split("/")[1]


def is_expense_path(path: str) -> bool:
    """``{mandate_path}/billing/topping/expenses/{job_id}``: collection-group hits elsewhere are not ours to bill."""
    segments = path.split("/")
    return len(segments) == 10 and is_mandate_path("/".join(segments[:6])) and segments[6:9] == [
        "billing", "topping", EXPENSES_COLLECTION_ID,
    ]


@dataclass(frozen=True)
class Balance:
    """``current_balance = current_topping - current_expenses`` is kept by applying every change to all of them."""

    current_balance: Decimal = ZERO
    current_topping: Decimal = ZERO
    current_expenses: Decimal = ZERO
    currency: str | None = None

    @classmethod
    def from_document(cls, data: dict[str, Any] | None) -> "Balance":
        data = data or {}
        return cls(
            current_balance=stored_amount(data.get("current_balance"), "current_balance"),
            current_topping=stored_amount(data.get("current_topping"), "current_topping"),
            current_expenses=stored_amount(data.get("current_expenses"), "current_expenses"),
            currency=data.get("currency") or None,
        )

    def credited(self, amount: Decimal, currency: str) -> "Balance":
        return Balance(self.current_balance + amount, self.current_topping + amount, self.current_expenses, currency)

    def debited(self, amount: Decimal) -> "Balance":
        return Balance(self.current_balance - amount, self.current_topping, self.current_expenses + amount,
                       self.currency)

    def stored_fields(self, timestamp_field: str) -> dict[str, Any]:
        """What a change writes (merged): all three amounts as exact strings, so a legacy float document is
        converted on its first change, plus ``last_updated`` and the timestamp of the kind of change."""
        fields = {key: value for key, value in self.exact().items() if value is not None}
        return {**fields, "last_updated": firestore.SERVER_TIMESTAMP, timestamp_field: firestore.SERVER_TIMESTAMP}

    def exact(self) -> dict[str, Any]:
        """Decimal strings: what is stored, what events carry."""
        return {
            "current_balance": format_amount(self.current_balance),
            "current_topping": format_amount(self.current_topping),
            "current_expenses": format_amount(self.current_expenses),
            "currency": self.currency,
        }
