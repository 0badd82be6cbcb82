"""POST /stripe/webhook: verified with Stripe's scheme, credits a paid top-up once, refuses anything unsigned."""
from __future__ import annotations

import time

import pytest

from billing.stripe_events import StripeEventOutcome, apply_stripe_event
from core.integrations.firebase import get_firestore

from .conftest import MANDATE_PATH, UID, WEBHOOK_SECRET, balance_events, firestore_dump, stored_balance, webhook_body
from .stripe_fake import sign


def _transaction(session: dict) -> dict:
    return get_firestore().document(session["metadata"]["transaction_path"]).get().to_dict()


def test_a_signed_completed_checkout_credits_the_balance_and_marks_the_transaction(
    top_up, deliver, stripe_fake,
) -> None:
    session = top_up("25.50")
    event = stripe_fake.event(session["id"])

    response = deliver(event)

    assert response.status_code == 200
    assert response.json() == {"received": True, "outcome": "credited"}
    balance = stored_balance()
    amounts = (balance["current_balance"], balance["current_topping"], balance["current_expenses"])
    assert amounts == ("25.50", "25.50", "0")
    assert balance["currency"] == "chf"
    transaction = _transaction(session)
    assert transaction["status"] == "added"
    assert transaction["amount_paid"] == "25.50"
    assert transaction["stripe_event_id"] == event["id"]
    assert transaction["stripe_payment_intent"] == event["data"]["object"]["payment_intent"]
    ledger = get_firestore().document(f"stripe_events/{event['id']}").get().to_dict()
    assert (ledger["outcome"], ledger["user_id"], ledger["amount_minor"]) == ("credited", UID, 2550)
    [published] = balance_events()
    assert published["payload"] == {
        "current_balance": "25.50", "current_topping": "25.50", "current_expenses": "0", "currency": "chf",
        "reason": "top_up", "amount": "25.50", "transaction_id": transaction["transaction_id"],
        "mandate_path": MANDATE_PATH,
    }


def test_a_replayed_event_credits_once(top_up, deliver, stripe_fake) -> None:
    event = stripe_fake.event(top_up("10")["id"])

    outcomes = [deliver(event).json()["outcome"] for _ in range(3)]

    assert outcomes == ["credited", "duplicate", "duplicate"]
    assert stored_balance()["current_balance"] == "10.00"
    assert len(balance_events()) == 1


def test_a_second_event_for_an_already_credited_session_credits_nothing(top_up, deliver, stripe_fake) -> None:
    session = top_up("10")
    deliver(stripe_fake.event(session["id"]))

    again = deliver(stripe_fake.event(session["id"], "checkout.session.async_payment_succeeded"))

    assert again.json()["outcome"] == "already_credited"
    assert stored_balance()["current_balance"] == "10.00"


def test_a_legacy_float_balance_is_credited_exactly_and_rewritten_as_decimal_strings(
    top_up, deliver, stripe_fake,
) -> None:
    # What the original left behind: floats with binary noise.
    get_firestore().document(f"clients/{UID}/billing/current_balance").set(
        {"current_balance": 0.30000000000000004, "current_topping": 0.7, "current_expenses": 0.4}
    )
    deliver(stripe_fake.event(top_up("0.10")["id"]))

    balance = stored_balance()
    assert (balance["current_balance"], balance["current_topping"], balance["current_expenses"]) == (
        "0.40000000000000004", "0.80", "0.4",
    )


def _tampered(body: bytes, tamper: str) -> tuple[bytes, str]:
    """(body delivered, Stripe-Signature header) for one way of getting the signature wrong."""
    now = int(time.time())
    if tamper == "wrong_secret":
        return body, sign(body, "whsec_not_ours")
    if tamper == "stale":  # older than stripe's 300 s tolerance: a captured delivery replayed later
        return body, sign(body, WEBHOOK_SECRET, timestamp=now - 3600)
    if tamper == "body_changed":  # signed, then the amount edited in transit
        return body.replace(b'"amount_total": 1000', b'"amount_total": 99900'), sign(body, WEBHOOK_SECRET)
    if tamper == "zeros":
        return body, f"t={now},v1={'0' * 64}"
    if tamper == "no_v1":
        return body, f"t={now}"
    return body, ""  # missing header


@pytest.mark.parametrize("tamper", ["wrong_secret", "stale", "body_changed", "zeros", "no_v1", "missing"])
def test_a_bad_signature_gets_400_and_changes_nothing(top_up, deliver, stripe_fake, tamper) -> None:
    body = webhook_body(stripe_fake.event(top_up("10")["id"]))
    delivered, signature = _tampered(body, tamper)
    assert delivered != body or tamper != "body_changed"
    before = firestore_dump()

    response = deliver(delivered, signature=signature)

    assert response.status_code == 400
    assert firestore_dump() == before
    assert balance_events() == []
    # The same event, properly signed, is accepted: only the signature was wrong.
    assert deliver(body).json()["outcome"] == "credited"


def test_a_signed_body_that_is_not_json_gets_400(deliver) -> None:
    assert deliver(b"\xff\xfe not json").status_code == 400


def test_without_a_webhook_secret_every_delivery_is_refused(top_up, deliver, stripe_fake, settings) -> None:
    event = stripe_fake.event(top_up("10")["id"])
    settings.STRIPE_WEBHOOK_SECRET = ""
    before = firestore_dump()

    response = deliver(event, signature=sign(webhook_body(event), ""))

    assert response.status_code == 503
    assert firestore_dump() == before


def test_an_oversized_declared_body_is_refused_before_it_is_read(client, settings) -> None:
    settings.STRIPE_WEBHOOK_SECRET = "whsec_test"
    response = client.generic("POST", "/stripe/webhook", b"{}", content_type="application/json",
                              CONTENT_LENGTH=str(10 * 1024 * 1024))
    assert response.status_code == 413


def test_the_webhook_accepts_only_post(client) -> None:
    assert client.get("/stripe/webhook").status_code == 405


def test_a_completed_checkout_not_yet_paid_waits_for_async_payment_succeeded(top_up, deliver, stripe_fake) -> None:
    session = top_up("10")

    first = deliver(stripe_fake.event(session["id"], payment_status="unpaid"))
    assert first.json()["outcome"] == "awaiting_payment"
    assert stored_balance() == {}
    assert _transaction(session)["status"] == "pending"

    second = deliver(stripe_fake.event(session["id"], "checkout.session.async_payment_succeeded"))
    assert second.json()["outcome"] == "credited"
    assert stored_balance()["current_balance"] == "10.00"


@pytest.mark.parametrize(("event_type", "status"), [
    ("checkout.session.expired", "expired"), ("checkout.session.async_payment_failed", "failed"),
])
def test_an_abandoned_or_failed_checkout_closes_the_transaction_without_credit(
    top_up, deliver, stripe_fake, event_type, status,
) -> None:
    session = top_up("10")

    response = deliver(stripe_fake.event(session["id"], event_type, payment_status="unpaid"))

    assert response.json()["outcome"] == "closed"
    assert _transaction(session)["status"] == status
    assert stored_balance() == {}
    assert balance_events() == []


def test_an_expiry_after_the_credit_leaves_the_transaction_credited(top_up, deliver, stripe_fake) -> None:
    session = top_up("10")
    deliver(stripe_fake.event(session["id"]))

    response = deliver(stripe_fake.event(session["id"], "checkout.session.expired"))

    assert response.json()["outcome"] == "ignored"
    assert _transaction(session)["status"] == "added"


@pytest.mark.parametrize(("change", "reason"), [
    ({"amount_total": 99900}, "amount_mismatch"),
    ({"currency": "eur"}, "amount_mismatch"),
    ({"id": "cs_test_someone_elses"}, "session_mismatch"),
])
def test_a_paid_session_that_disagrees_with_the_transaction_is_not_credited(
    top_up, deliver, stripe_fake, change, reason,
) -> None:
    session = top_up("10")

    response = deliver(stripe_fake.event(session["id"], **change))

    assert response.status_code == 200  # applying it again would not change the answer: Stripe may stop retrying
    assert response.json()["outcome"] == "rejected"
    assert stored_balance() == {}
    transaction = _transaction(session)
    assert (transaction["status"], transaction["review_reason"]) == ("needs_review", reason)


def test_a_session_for_a_transaction_that_does_not_exist_is_rejected(top_up, deliver, stripe_fake) -> None:
    session = top_up("10")
    get_firestore().document(session["metadata"]["transaction_path"]).delete()

    assert deliver(stripe_fake.event(session["id"])).json()["outcome"] == "rejected"
    assert stored_balance() == {}


@pytest.mark.parametrize("metadata_change", [
    {"user_id": "user_bob"},  # metadata naming another user than the path
    {"transaction_path": "clients/user_bob/billing/current_balance"},
    {"mandate_path": "clients/user_alice"},
    {"transaction_id": "../../x"},
])
def test_inconsistent_metadata_is_rejected(top_up, deliver, stripe_fake, metadata_change) -> None:
    session = top_up("10")
    event = stripe_fake.event(session["id"])
    event["data"]["object"]["metadata"].update(metadata_change)

    assert deliver(event).json()["outcome"] == "rejected"
    assert stored_balance() == {}
    assert stored_balance("user_bob") == {}
    assert _transaction(session)["status"] == "pending"


def test_a_legacy_transaction_without_minor_units_is_credited_what_was_paid(top_up, deliver, stripe_fake) -> None:
    """The original stored ``amount`` as a float and charged ``int(amount * 100)``: 19.99 was charged as 19.98."""
    session = top_up("19.99")
    get_firestore().document(session["metadata"]["transaction_path"]).update(
        {"amount": 19.99, "amount_minor": None}
    )

    deliver(stripe_fake.event(session["id"], amount_total=1998))

    assert stored_balance()["current_balance"] == "19.98"


def test_events_that_are_not_top_ups_are_acknowledged_and_ignored(deliver) -> None:
    before = firestore_dump()
    events = [
        {"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {"object": "payment_intent"}}},
        {"id": "evt_2", "type": "checkout.session.completed",
         "data": {"object": {"object": "checkout.session", "payment_status": "paid", "metadata": {}}}},
    ]

    assert [deliver(event).json()["outcome"] for event in events] == ["ignored", "ignored"]
    assert firestore_dump() == before


def test_a_top_up_event_with_an_unusable_id_is_rejected_without_writes(top_up, stripe_fake) -> None:
    event = stripe_fake.event(top_up("10")["id"], event_id="evt/../../x")
    before = firestore_dump()

    assert apply_stripe_event(event) is StripeEventOutcome.REJECTED
    assert firestore_dump() == before


def test_a_failure_while_applying_answers_500_and_the_retry_credits(top_up, deliver, stripe_fake, monkeypatch) -> None:
    event = stripe_fake.event(top_up("10")["id"])

    def firestore_down(_checkout):
        from google.api_core.exceptions import ServiceUnavailable

        raise ServiceUnavailable("firestore down at 10.0.0.7")

    monkeypatch.setattr("billing.stripe_events._credit_top_up", firestore_down)
    response = deliver(event)

    assert response.status_code == 500
    assert "10.0.0.7" not in response.content.decode()
    # The claim was released: Stripe's retry applies the event at once instead of waiting for the claim to go stale.
    assert not get_firestore().document(f"stripe_events/{event['id']}").get().exists
    monkeypatch.undo()
    assert deliver(event).json()["outcome"] == "credited"
    assert stored_balance()["current_balance"] == "10.00"
