"""Billing writes: start a Stripe top-up, debit expenses (crediting is ``stripe_events.apply_stripe_event``).

Only two things ever change a balance, each in one Firestore transaction that also marks what it consumed:

* a verified Stripe webhook (``stripe_events``): the event's ledger document, the top-up transaction and the
  balance together;
* ``debit_expense`` (run by ``manage.py bill_expenses``): the expense's ``billed`` flag and the balance together.

No RPC method reaches either (the original's ``process_immediate_top_up`` let any caller credit any balance).
A ``balance.updated`` event goes to the user after each committed change, never from inside a transaction body,
which Firestore may run more than once.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal

import structlog
from google.cloud import firestore
from google.cloud.firestore_v1 import DocumentReference, DocumentSnapshot, FieldFilter

from core.integrations.firebase import get_firestore
from realtime.events import BALANCE_UPDATED
from realtime.publisher import publish_event
from core.errors import InvalidArgs, NotFound, RpcError

from .documents import EXPENSES_COLLECTION_ID, Balance, balance_ref, is_expense_path, owner_of, transactions_path
from .money import CorruptAmount, format_amount, stored_amount, to_minor_units
from .stripe_gateway import PaymentsNotConfigured, create_top_up_checkout, payments_configured

log = structlog.get_logger(__name__)

# Every change to one user's balance contends on one document, and the SDK retries an aborted commit at once.
# The emulator resolves contention by lock timeouts (seconds each), so give it room; production aborts far less.
TRANSACTION_ATTEMPTS = 30


class ExpenseOutcome(str, enum.Enum):
    DEBITED = "debited"
    ALREADY_BILLED = "already_billed"
    MISSING = "missing"
    INVALID_PRICE = "invalid_price"


@dataclass(frozen=True)
class TopUpCheckout:
    transaction_id: str
    session_id: str
    checkout_url: str


@dataclass(frozen=True)
class ExpenseBillingRun:
    debited: int
    skipped: dict[str, int]  # outcome -> count


def read_in_transaction(
    transaction: firestore.Transaction, refs: list[DocumentReference],
) -> dict[str, DocumentSnapshot]:
    """One round trip for all the documents a transaction decides on, keyed by path."""
    return {snapshot.reference.path: snapshot for snapshot in transaction.get_all(refs)}


def publish_balance_updated(uid: str, balance: Balance, *, reason: str, amount: Decimal, **refs: str) -> None:
    payload = {**balance.exact(), "reason": reason, "amount": format_amount(amount), **refs}
    publish_event(uid, BALANCE_UPDATED, payload)


# --- top-up: pending transaction + Stripe Checkout Session ------------------------------------------------------------

def start_top_up(*, mandate_path: str, currency: str, amount: Decimal) -> TopUpCheckout:
    """Record a pending transaction and open a Checkout Session for it. Nothing is credited here."""
    if not payments_configured():
        raise PaymentsNotConfigured()
    uid = owner_of(mandate_path)
    db = get_firestore()
    mandate, balance_doc = db.document(mandate_path), balance_ref(uid)
    read = {snapshot.reference.path: snapshot for snapshot in db.get_all([mandate, balance_doc])}
    if not read[mandate.path].exists:
        raise NotFound("no mandate at mandate_path")
    kept_in = Balance.from_document(read[balance_doc.path].to_dict()).currency
    if kept_in and kept_in != currency:
        raise InvalidArgs(f"this balance is kept in {kept_in.upper()}; top up in {kept_in.upper()}")

    transaction_ref = db.collection(transactions_path(mandate_path)).document()
    transaction_ref.create({
        "transaction_id": transaction_ref.id,
        "currency": currency,
        "amount": format_amount(amount),
        "amount_minor": to_minor_units(amount, currency),  # what Stripe is asked to charge; checked on crediting
        "status": "pending",
        "payment_method": "stripe",
        "created_at": firestore.SERVER_TIMESTAMP,
    })
    metadata = {
        "user_id": uid, "mandate_path": mandate_path, "transaction_id": transaction_ref.id,
        "transaction_path": transaction_ref.path, "payment_type": "top_up",
    }
    try:
        session = create_top_up_checkout(
            transaction_id=transaction_ref.id, amount=amount, currency=currency, metadata=metadata,
        )
    except RpcError as exc:
        transaction_ref.update({"status": "error", "error_code": exc.code, "updated_at": firestore.SERVER_TIMESTAMP})
        raise
    transaction_ref.update({
        "stripe_session_id": session.id,
        "stripe_created_at": firestore.SERVER_TIMESTAMP,
    })
    log.info("top_up_checkout_created", uid=uid, transaction_id=transaction_ref.id, session_id=session.id,
             amount=format_amount(amount), currency=currency)
    return TopUpCheckout(transaction_id=transaction_ref.id, session_id=session.id, checkout_url=session.url)


# --- expenses ---------------------------------------------------------------------------------------------------------

def debit_expense(*, expense_path: str) -> ExpenseOutcome:
    """Debit one unbilled expense (``billed is False``) and mark it billed, atomically; a second run debits nothing."""
    db = get_firestore()
    expense_ref, balance_doc = db.document(expense_path), balance_ref(owner_of(expense_path))

    @firestore.transactional
    def debit(transaction: firestore.Transaction) -> tuple[ExpenseOutcome, Balance | None, Decimal | None]:
        read = read_in_transaction(transaction, [expense_ref, balance_doc])
        expense = read[expense_ref.path]
        if not expense.exists:
            return ExpenseOutcome.MISSING, None, None
        data = expense.to_dict() or {}
        if data.get("billed") is not False:
            return ExpenseOutcome.ALREADY_BILLED, None, None
        try:
            price = stored_amount(data.get("total_sales_price"), "total_sales_price")
        except CorruptAmount:
            return ExpenseOutcome.INVALID_PRICE, None, None
        if price < 0:
            return ExpenseOutcome.INVALID_PRICE, None, None
        debited = Balance.from_document(read[balance_doc.path].to_dict()).debited(price)
        transaction.update(expense_ref, {"billed": True, "billed_at": firestore.SERVER_TIMESTAMP})
        transaction.set(balance_doc, debited.stored_fields("timestamp_expenses"), merge=True)
        return ExpenseOutcome.DEBITED, debited, price

    outcome, balance, price = debit(db.transaction(max_attempts=TRANSACTION_ATTEMPTS))
    if outcome is ExpenseOutcome.INVALID_PRICE:
        log.error("expense_not_billed", expense_path=expense_path,
                  reason="total_sales_price is not a non-negative number")
    if balance is not None and price is not None:
        mandate_path = "/".join(expense_path.split("/")[:6])
        publish_balance_updated(owner_of(expense_path), balance, reason="expense", amount=price,
                                job_id=expense_ref.id, mandate_path=mandate_path)
    return outcome


def bill_unbilled_expenses() -> ExpenseBillingRun:
    """Debit every ``billed == False`` expense of every mandate (what ``manage.py bill_expenses`` runs)."""
    query = get_firestore().collection_group(EXPENSES_COLLECTION_ID).where(filter=FieldFilter("billed", "==", False))
    # Collected first: the transactions below write the documents this query reads.
    paths = [snapshot.reference.path for snapshot in query.stream()]
    debited, skipped = 0, {}
    for path in paths:
        if not is_expense_path(path):
            continue
        outcome = debit_expense(expense_path=path)
        if outcome is ExpenseOutcome.DEBITED:
            debited += 1
        else:
            skipped[outcome.value] = skipped.get(outcome.value, 0) + 1
    return ExpenseBillingRun(debited=debited, skipped=skipped)
