"""Exactly-once crediting under replays and concurrent deliveries (a real uvicorn gateway), and exact sums."""
from __future__ import annotations

import threading
from typing import Iterator

import httpx
import pytest

from core.integrations.firebase import get_firestore
from tests.conftest import start_gateway

from .conftest import MANDATE_PATH, WEBHOOK_SECRET, balance_events, stored_balance, webhook_body
from .stripe_fake import sign


@pytest.fixture(scope="module")
def webhook_gateway(stack) -> Iterator[str]:
    extra_env = {"STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET}
    process, address = start_gateway(stack, extra_env=extra_env, name="billing-webhooks")
    yield address
    process.stop()


def test_the_same_signed_event_delivered_ten_times_five_at_once_credits_once(
    webhook_gateway, top_up, stripe_fake,
) -> None:
    session = top_up("10.00")
    event = stripe_fake.event(session["id"])
    body = webhook_body(event)
    url = f"http://{webhook_gateway}/stripe/webhook"
    outcomes: list[tuple[int, str]] = []
    lock = threading.Lock()
    start = threading.Barrier(5)

    def deliver() -> None:
        # Each delivery signs anew, as Stripe does for every attempt.
        headers = {"Stripe-Signature": sign(body, WEBHOOK_SECRET), "Content-Type": "application/json"}
        with httpx.Client(timeout=60) as client:
            start.wait() if threading.current_thread().name.startswith("concurrent") else None
            response = client.post(url, content=body, headers=headers)
        with lock:
            outcomes.append((response.status_code, response.json().get("outcome", "")))

    threads = [threading.Thread(target=deliver, name=f"concurrent-{i}") for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for _ in range(5):
        deliver()

    assert [status for status, _ in outcomes] == [200] * 10
    assert sorted(outcome for _, outcome in outcomes) == ["credited"] + ["duplicate"] * 9
    balance = stored_balance()
    assert (balance["current_balance"], balance["current_topping"]) == ("10.00", "10.00")
    transaction = get_firestore().document(session["metadata"]["transaction_path"]).get().to_dict()
    assert transaction["status"] == "added"
    assert len(balance_events()) == 1
    assert [snapshot.id for snapshot in get_firestore().collection("stripe_events").stream()] == [event["id"]]


def test_a_hundred_signed_top_ups_of_ten_cents_sum_to_exactly_ten(deliver, mandate) -> None:
    """Through the webhook and Firestore (float ``+=`` gives 9.99999999999998; 1,000 steps: test_money.py)."""
    db = get_firestore()
    transactions = db.collection(f"{MANDATE_PATH}/billing/topping/transactions")
    events = []
    batch = db.batch()
    for index in range(100):
        ref = transactions.document(f"tx{index:04d}")
        batch.set(ref, {"transaction_id": ref.id, "currency": "chf", "amount": "0.10", "amount_minor": 10,
                        "status": "pending"})
        events.append(_completed_event(ref.path, ref.id, index))
    batch.commit()

    outcomes = {deliver(event).json()["outcome"] for event in events}

    assert outcomes == {"credited"}
    balance = stored_balance()
    assert (balance["current_balance"], balance["current_topping"]) == ("10.00", "10.00")
    assert balance_events()[-1]["payload"]["current_balance"] == "10.00"


def _completed_event(transaction_path: str, transaction_id: str, index: int) -> dict:
    session = {
        "id": f"cs_test_{index:04d}", "object": "checkout.session", "status": "complete", "payment_status": "paid",
        "amount_total": 10, "currency": "chf", "payment_intent": f"pi_{index:04d}",
        "metadata": {"user_id": "user_alice", "mandate_path": MANDATE_PATH, "transaction_id": transaction_id,
                     "transaction_path": transaction_path, "payment_type": "top_up"},
    }
    return {"id": f"evt_{index:04d}", "object": "event", "type": "checkout.session.completed",
            "data": {"object": session}}


def test_a_delivery_finding_a_fresh_claim_answers_409_and_changes_nothing(
    top_up, deliver, stripe_fake, monkeypatch,
) -> None:
    event = stripe_fake.event(top_up("10")["id"])
    # Another delivery of this event is being applied right now (it has claimed the event, not finished).
    get_firestore().document(f"stripe_events/{event['id']}").create({"state": "processing"})
    monkeypatch.setattr("billing.stripe_events.CLAIM_WAIT_S", 0.2)

    response = deliver(event)

    assert (response.status_code, response.json()["outcome"]) == (409, "in_progress")
    assert stored_balance() == {}


def test_a_stale_claim_left_by_a_dead_delivery_is_taken_over_and_credited_once(
    top_up, deliver, stripe_fake, monkeypatch,
) -> None:
    event = stripe_fake.event(top_up("10")["id"])
    get_firestore().document(f"stripe_events/{event['id']}").create({"state": "processing"})
    monkeypatch.setattr("billing.stripe_events.STALE_CLAIM_S", 0)

    outcomes = [deliver(event).json()["outcome"] for _ in range(2)]

    assert outcomes == ["credited", "duplicate"]
    assert stored_balance()["current_balance"] == "10.00"
