"""Applying verified Stripe events: credit a paid top-up once, close an abandoned one, refuse inconsistent ones.

Exactly once, keyed by the Stripe event id (``stripe_events/{event_id}``):

1. **Claim.** The first delivery creates the event's ledger document (``state: processing``); Firestore's create is
   atomic, so of five concurrent deliveries exactly one proceeds. The others wait briefly for its outcome and answer
   ``duplicate`` (or ``in_progress``, a 409 that makes Stripe retry later). Without the claim, five transactions
   would contend on the same documents; the emulator resolves that with multi-second lock timeouts.
2. **Apply.** One Firestore transaction reads the ledger document, the top-up transaction and the balance, and
   writes all three: the balance, ``status: added`` on the transaction, ``state: done`` on the ledger. The
   transaction, not the claim, is what guarantees one credit: it re-checks the ledger and the transaction status, so
   a delivery that took over a stale claim (its first holder died, ``STALE_CLAIM_S``) cannot credit twice, and a
   different event for an already credited transaction credits nothing.

If applying fails, the claim is released so Stripe's retry applies the event at once.
"""
from __future__ import annotations

import datetime as dt
import enum
import re
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Mapping

import structlog
from google.api_core.exceptions import AlreadyExists, FailedPrecondition, NotFound
from google.cloud import firestore
from google.cloud.firestore_v1 import DocumentReference, DocumentSnapshot

from core.integrations.firebase import get_firestore

from .documents import Balance, balance_ref, is_mandate_path, owner_of, stripe_event_ref, transactions_path
from .money import format_amount, from_minor_units
from .services import TRANSACTION_ATTEMPTS, publish_balance_updated, read_in_transaction

log = structlog.get_logger(__name__)

CREDIT_EVENT_TYPES = frozenset({"checkout.session.completed", "checkout.session.async_payment_succeeded"})
CLOSE_EVENT_TYPES = {"checkout.session.expired": "expired", "checkout.session.async_payment_failed": "failed"}
# Stripe event ids ("evt_1Q…") and our transaction ids become document ids: nothing else may.
_SAFE_ID_RE = re.compile(r"^[A-Za-z0-9_]{1,255}$")
# A claim this old belongs to a delivery that died mid-way: the next delivery applies the event itself.
STALE_CLAIM_S = 60
# How long a concurrent re-delivery waits for the first one's outcome before answering in_progress.
CLAIM_WAIT_S = 5.0
_CLAIM_POLL_S = 0.05


class StripeEventOutcome(str, enum.Enum):
    CREDITED = "credited"
    DUPLICATE = "duplicate"  # this event id was applied before
    IN_PROGRESS = "in_progress"  # another delivery of this event is being applied right now (answered 409)
    ALREADY_CREDITED = "already_credited"  # another event credited this transaction
    AWAITING_PAYMENT = "awaiting_payment"  # completed, but the payment method settles later
    CLOSED = "closed"  # expired or failed checkout: its pending transaction is closed, nothing credited
    REJECTED = "rejected"  # inconsistent with what we recorded: nothing credited, logged as an error for review
    IGNORED = "ignored"  # not a top-up event, or nothing left to do


@dataclass(frozen=True)
class _CheckoutEvent:
    event_id: str
    event_type: str
    session_id: str
    uid: str
    mandate_path: str
    transaction_id: str
    transaction_path: str
    currency: str
    amount_minor: int | None
    payment_intent: str | None

    @property
    def amount(self) -> Decimal:
        return from_minor_units(self.amount_minor or 0, self.currency)

    def ledger(self, outcome: StripeEventOutcome, **extra: Any) -> dict[str, Any]:
        return {
            "state": "done", "type": self.event_type, "outcome": outcome.value, "user_id": self.uid,
            "session_id": self.session_id, "transaction_path": self.transaction_path, "currency": self.currency,
            "amount_minor": self.amount_minor, "processed_at": firestore.SERVER_TIMESTAMP, **extra,
        }


def apply_stripe_event(event: Mapping[str, Any]) -> StripeEventOutcome:
    """Apply one event whose signature the caller has verified (a ``stripe.Event`` from ``construct_event``, or
    the same JSON as a dict)."""
    event_type = event.get("type")
    session = (event.get("data") or {}).get("object") or {}
    handled = event_type in CREDIT_EVENT_TYPES or event_type in CLOSE_EVENT_TYPES
    if not handled or session.get("object") != "checkout.session" \
            or (session.get("metadata") or {}).get("payment_type") != "top_up":
        return StripeEventOutcome.IGNORED
    if not isinstance(event.get("id"), str) or not _SAFE_ID_RE.match(event["id"]):
        log.error("stripe_event_rejected", event_type=event_type, reason="bad_event_id")
        return StripeEventOutcome.REJECTED
    if event_type in CREDIT_EVENT_TYPES and session.get("payment_status") != "paid":
        return StripeEventOutcome.AWAITING_PAYMENT
    checkout = _checkout_event(event)
    if checkout is None:
        return _record_bad_metadata(event["id"], event_type)
    claim_time, answer = _claim(stripe_event_ref(checkout.event_id), event_type)
    if answer is not None:
        return answer
    try:
        if event_type in CREDIT_EVENT_TYPES:
            return _credit_top_up(checkout)
        return _close_top_up(checkout, status=CLOSE_EVENT_TYPES[event_type])
    except BaseException:
        _release(stripe_event_ref(checkout.event_id), claim_time)
        raise


def _checkout_event(event: Mapping[str, Any]) -> _CheckoutEvent | None:
    """The fields we act on, or None when the metadata is not a consistent top-up of ours."""
    session = event["data"]["object"]
    meta = session.get("metadata") or {}
    uid, mandate_path, transaction_id = meta.get("user_id"), meta.get("mandate_path"), meta.get("transaction_id")
    if not all(isinstance(value, str) and value for value in (uid, mandate_path, transaction_id)):
        return None
    transaction_path = f"{transactions_path(mandate_path)}/{transaction_id}"
    if not is_mandate_path(mandate_path) or owner_of(mandate_path) != uid or not _SAFE_ID_RE.match(transaction_id) \
            or meta.get("transaction_path") != transaction_path:
        return None
    amount_minor, payment_intent = session.get("amount_total"), session.get("payment_intent")
    return _CheckoutEvent(
        event_id=event["id"], event_type=event["type"], session_id=str(session.get("id") or ""), uid=uid,
        mandate_path=mandate_path, transaction_id=transaction_id, transaction_path=transaction_path,
        currency=str(session.get("currency") or "").lower(),
        amount_minor=amount_minor if isinstance(amount_minor, int) and not isinstance(amount_minor, bool) else None,
        payment_intent=payment_intent if isinstance(payment_intent, str) else None,
    )


def _record_bad_metadata(event_id: str, event_type: str) -> StripeEventOutcome:
    log.error("stripe_event_rejected", event_id=event_id, event_type=event_type, reason="bad_metadata")
    try:
        stripe_event_ref(event_id).create({
            "state": "done", "type": event_type, "outcome": StripeEventOutcome.REJECTED.value,
            "reason": "bad_metadata", "processed_at": firestore.SERVER_TIMESTAMP,
        })
    except AlreadyExists:
        return StripeEventOutcome.DUPLICATE
    return StripeEventOutcome.REJECTED


# --- the claim --------------------------------------------------------------------------------------------------------

def _claim(event_ref: DocumentReference, event_type: str) -> tuple[dt.datetime | None, StripeEventOutcome | None]:
    """(claim time, None) when this delivery must apply the event; (None, answer) when it must not."""
    try:
        result = event_ref.create({"state": "processing", "type": event_type, "claimed_at": firestore.SERVER_TIMESTAMP})
        return result.update_time, None
    except AlreadyExists:
        pass
    deadline = time.monotonic() + CLAIM_WAIT_S
    while True:
        snapshot = event_ref.get()
        if not snapshot.exists:  # released by a failed delivery: claim it afresh
            return _claim(event_ref, event_type)
        if (snapshot.to_dict() or {}).get("state") != "processing":
            return None, StripeEventOutcome.DUPLICATE
        if _age_s(snapshot) > STALE_CLAIM_S:
            log.warning("stripe_event_stale_claim_taken_over", event_id=event_ref.id)
            return snapshot.update_time, None
        if time.monotonic() >= deadline:
            return None, StripeEventOutcome.IN_PROGRESS
        time.sleep(_CLAIM_POLL_S)


def _age_s(snapshot: DocumentSnapshot) -> float:
    return (dt.datetime.now(dt.timezone.utc) - snapshot.update_time).total_seconds()


def _release(event_ref: DocumentReference, claim_time: dt.datetime | None) -> None:
    """Delete our claim if nobody has touched it since, so a retry need not wait for it to go stale."""
    try:
        event_ref.delete(option=get_firestore().write_option(last_update_time=claim_time))
    except (FailedPrecondition, NotFound):
        return  # finished or taken over by another delivery since: theirs to keep
    log.warning("stripe_event_claim_released", event_id=event_ref.id)


def _is_done(snapshot: DocumentSnapshot) -> bool:
    return snapshot.exists and (snapshot.to_dict() or {}).get("state") == "done"


# --- credit and close -------------------------------------------------------------------------------------------------

def _credit_refusal(checkout: _CheckoutEvent, transaction: DocumentSnapshot, balance: Balance) -> str | None:
    """Why this paid session must not credit the recorded transaction, or None when it may."""
    if not transaction.exists:
        return "transaction_not_found"
    recorded = transaction.to_dict() or {}
    if recorded.get("status") == "added":
        return "already_credited"
    if recorded.get("stripe_session_id") not in (None, checkout.session_id):
        return "session_mismatch"
    if checkout.amount_minor is None or checkout.amount_minor <= 0 or recorded.get("currency") != checkout.currency:
        return "amount_mismatch"
    # Transactions written by the original service have no amount_minor; for them the amount paid is authoritative.
    if recorded.get("amount_minor") is not None and recorded["amount_minor"] != checkout.amount_minor:
        return "amount_mismatch"
    if balance.currency and balance.currency != checkout.currency:
        return "balance_currency_mismatch"
    return None


def _credit_top_up(checkout: _CheckoutEvent) -> StripeEventOutcome:
    db = get_firestore()
    event_ref, transaction_ref = stripe_event_ref(checkout.event_id), db.document(checkout.transaction_path)
    balance_doc = balance_ref(checkout.uid)

    @firestore.transactional
    def credit(transaction: firestore.Transaction) -> tuple[StripeEventOutcome, Balance | None, str | None]:
        read = read_in_transaction(transaction, [event_ref, transaction_ref, balance_doc])
        if _is_done(read[event_ref.path]):
            return StripeEventOutcome.DUPLICATE, None, None
        balance = Balance.from_document(read[balance_doc.path].to_dict())
        refusal = _credit_refusal(checkout, read[transaction_ref.path], balance)
        if refusal == "already_credited":
            transaction.set(event_ref, checkout.ledger(StripeEventOutcome.ALREADY_CREDITED))
            return StripeEventOutcome.ALREADY_CREDITED, None, refusal
        if refusal is not None:
            transaction.set(event_ref, checkout.ledger(StripeEventOutcome.REJECTED, reason=refusal))
            if read[transaction_ref.path].exists:
                transaction.update(transaction_ref, {"status": "needs_review", "review_reason": refusal,
                                                     "stripe_event_id": checkout.event_id})
            return StripeEventOutcome.REJECTED, None, refusal
        credited = balance.credited(checkout.amount, checkout.currency)
        transaction.update(transaction_ref, {
            "status": "added",
            "amount_paid": format_amount(checkout.amount),
            "processed_at": firestore.SERVER_TIMESTAMP,
            "stripe_session_id": checkout.session_id,
            "stripe_payment_intent": checkout.payment_intent,
            "stripe_payment_status": "completed",
            "stripe_event_id": checkout.event_id,
        })
        transaction.set(balance_doc, credited.stored_fields("timestamp_topping"), merge=True)
        transaction.set(event_ref, checkout.ledger(StripeEventOutcome.CREDITED))
        return StripeEventOutcome.CREDITED, credited, None

    outcome, balance, reason = credit(db.transaction(max_attempts=TRANSACTION_ATTEMPTS))
    log_method = log.error if outcome is StripeEventOutcome.REJECTED else log.info
    log_method("stripe_top_up_event", event_id=checkout.event_id, outcome=outcome.value, reason=reason,
               uid=checkout.uid, transaction_id=checkout.transaction_id, amount_minor=checkout.amount_minor,
               currency=checkout.currency)
    if balance is not None:
        publish_balance_updated(checkout.uid, balance, reason="top_up", amount=checkout.amount,
                                transaction_id=checkout.transaction_id, mandate_path=checkout.mandate_path)
    return outcome


def _close_top_up(checkout: _CheckoutEvent, *, status: str) -> StripeEventOutcome:
    """An expired or failed Checkout: its pending transaction is closed (the original left it pending forever)."""
    db = get_firestore()
    event_ref, transaction_ref = stripe_event_ref(checkout.event_id), db.document(checkout.transaction_path)

    @firestore.transactional
    def close(transaction: firestore.Transaction) -> StripeEventOutcome:
        read = read_in_transaction(transaction, [event_ref, transaction_ref])
        if _is_done(read[event_ref.path]):
            return StripeEventOutcome.DUPLICATE
        snapshot = read[transaction_ref.path]
        pending = snapshot.exists and (snapshot.to_dict() or {}).get("status") == "pending"
        if pending:
            transaction.update(transaction_ref, {"status": status, "closed_at": firestore.SERVER_TIMESTAMP,
                                                 "stripe_event_id": checkout.event_id})
        outcome = StripeEventOutcome.CLOSED if pending else StripeEventOutcome.IGNORED
        transaction.set(event_ref, checkout.ledger(outcome))
        return outcome

    outcome = close(db.transaction(max_attempts=TRANSACTION_ATTEMPTS))
    log.info("stripe_top_up_event", event_id=checkout.event_id, outcome=outcome.value, uid=checkout.uid,
             transaction_id=checkout.transaction_id, status=status)
    return outcome
