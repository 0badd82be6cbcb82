"""Billing reads. Reading never writes: the original's ``get_user_balance`` credited every pending (even abandoned)
Checkout and billed unbilled expenses as a side effect; here top-ups are credited only by a verified Stripe webhook
and expenses only by ``services.bill_unbilled_expenses``."""
from __future__ import annotations

from typing import Any

from core.integrations.firebase import get_firestore

from .documents import Balance, balance_ref, expenses_path


def balance_of(*, uid: str) -> Balance:
    """The stored balance; a user who never topped up has a zero balance (not an error)."""
    return Balance.from_document(balance_ref(uid).get().to_dict())


def expenses_of(*, mandate_path: str) -> dict[str, dict[str, Any]]:
    """Every expense document of the mandate, keyed by job id, as stored."""
    collection = get_firestore().collection(expenses_path(mandate_path))
    return {snapshot.id: snapshot.to_dict() or {} for snapshot in collection.stream()}
