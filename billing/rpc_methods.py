"""FIREBASE_MANAGEMENT.* billing methods (the namespace is declared by ``firebase_data.namespaces``; these four names
are ours).

Original names, argument names and order (§2.6). What changed for callers:

* reads never write (the original's ``get_user_balance`` credited pending top-ups and billed expenses);
* ``add_top_up`` only opens a Stripe Checkout: the balance is credited by the signed ``POST /stripe/webhook``;
* failures are typed errors instead of ``{"success": false, "error": <exception text>}``;
* amounts are exact decimals. Numbers are still returned as JSON numbers where the original returned floats, and
  ``get_balance_info`` adds the exact decimal strings under ``exact``.

Deliberately not exposed: ``process_immediate_top_up`` (let any caller credit any balance), ``process_stripe_webhook``
(an unsigned RPC; replaced by the verified webhook), ``retrieve_stripe_session`` (returned any session by id,
whoever's it was), ``x_add_top_up`` / ``x_process_immediate_top_up``, ``test_strip``.
"""
from __future__ import annotations

from typing import Annotated, Any

from core.errors import InvalidArgs
from firebase_data.namespaces import FIREBASE_MANAGEMENT
from rpc.types import MaxLen, UserId, UserPath

from . import selectors, services
from .documents import Balance, owner_of, require_mandate_path
from .money import parse_currency, parse_top_up_amount


def _uid_from(mandate_path: str | None, user_id: str | None) -> str:
    # The registry has already checked that both, when given, belong to the envelope's user.
    if mandate_path is not None:
        return owner_of(mandate_path)
    if user_id is not None:
        return user_id
    raise InvalidArgs("give mandate_path or user_id")


def _as_numbers(balance: Balance) -> dict[str, float]:
    return {
        "current_balance": float(balance.current_balance),
        "current_expenses": float(balance.current_expenses),
        "current_topping": float(balance.current_topping),
    }


@FIREBASE_MANAGEMENT.method(writes=False)
def get_user_balance(mandate_path: UserPath | None = None, user_id: UserId | None = None) -> float:
    """The user's balance (top-ups credited by Stripe minus billed expenses), as a number; 0 before any top-up.

    Reads only. Top-ups count once their payment is confirmed by Stripe's webhook; expenses once billed.
    """
    return float(selectors.balance_of(uid=_uid_from(mandate_path, user_id)).current_balance)


@FIREBASE_MANAGEMENT.method(writes=False)
def get_balance_info(mandate_path: UserPath | None = None, user_id: UserId | None = None) -> dict[str, Any]:
    """``{current_balance, current_expenses, current_topping}`` as numbers, plus ``currency`` and ``exact``
    (the same amounts as exact decimal strings). Reads only."""
    balance = selectors.balance_of(uid=_uid_from(mandate_path, user_id))
    return {**_as_numbers(balance), "currency": balance.currency, "exact": balance.exact()}


@FIREBASE_MANAGEMENT.method(writes=False)
def get_all_expenses(mandate_path: UserPath) -> dict[str, dict[str, Any]]:
    """Every expense of the mandate, ``{job_id: document}`` as stored (``total_sales_price``, ``billed``...)."""
    return selectors.expenses_of(mandate_path=require_mandate_path("mandate_path", mandate_path))


@FIREBASE_MANAGEMENT.method(writes=True)
def add_top_up(mandate_path: UserPath, top_up_data: Annotated[dict, MaxLen(20)]) -> dict[str, Any]:
    """Start a top-up: ``top_up_data = {"currency": "chf", "amount": "25.00"}`` (a number is accepted too).

    Records a pending transaction under ``{mandate_path}/billing/topping/transactions`` and returns
    ``{success, checkout_url, transaction_id, session_id}``. The balance is credited only when Stripe confirms the
    payment. INVALID_ARGS for a bad currency/amount (at most the currency's decimals), NOT_FOUND for a missing
    mandate, UNAVAILABLE when payments are not configured or Stripe cannot be reached.
    """
    path = require_mandate_path("mandate_path", mandate_path)
    currency = parse_currency(top_up_data.get("currency"))
    amount = parse_top_up_amount(top_up_data.get("amount"), currency)
    checkout = services.start_top_up(mandate_path=path, currency=currency, amount=amount)
    return {
        "success": True,
        "checkout_url": checkout.checkout_url,
        "transaction_id": checkout.transaction_id,
        "session_id": checkout.session_id,
        "message": "Payment page created; the balance is credited once the payment is confirmed",
    }
