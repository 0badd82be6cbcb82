"""Billing fixtures: the Stripe fake, Stripe settings pointing at it, a mandate, webhook delivery, a Firestore dump."""
from __future__ import annotations

import json
import secrets
import uuid
from typing import Any, Callable, Iterator

import pytest
from django.test import Client

from billing.documents import balance_ref
from core.integrations.firebase import get_firestore
from core.integrations.redis import get_redis
from realtime.channels import history_key, user_channel

from .stripe_fake import StripeFake, sign

UID = "user_alice"
OTHER_UID = "user_bob"
MANDATE_PATH = f"clients/{UID}/bo_clients/client_1/mandates/mandate_1"
API_KEY = "sk_test_" + secrets.token_hex(8)
WEBHOOK_SECRET = "whsec_" + secrets.token_hex(16)
SUCCESS_URL = "https://app.example.test/payment-success"
CANCEL_URL = "https://app.example.test/payment-canceled"


@pytest.fixture(scope="session")
def stripe_fake() -> Iterator[StripeFake]:
    fake = StripeFake(api_key=API_KEY).start()
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def stripe_settings(settings: Any, stripe_fake: StripeFake) -> StripeFake:
    stripe_fake.reset()
    settings.STRIPE_SECRET_KEY = API_KEY
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_API_BASE = stripe_fake.url
    settings.STRIPE_SUCCESS_URL = SUCCESS_URL
    settings.STRIPE_CANCEL_URL = CANCEL_URL
    return stripe_fake


@pytest.fixture
def mandate() -> str:
    get_firestore().document(MANDATE_PATH).set({"legal_name": "Alice SA", "isactive": True})
    return MANDATE_PATH


@pytest.fixture
def fm(rpc: Callable[..., Any]) -> Callable[..., Any]:
    """``fm("get_user_balance", None, UID)`` → RpcResult of FIREBASE_MANAGEMENT.<method> as user ``uid``."""

    def call(method: str, *args: Any, uid: str = UID, key: str | None = None, **kwargs: Any) -> Any:
        return rpc(f"FIREBASE_MANAGEMENT.{method}", *args, user_id=uid, idempotency_key=key or uuid.uuid4().hex,
                   kwargs=kwargs)

    return call


@pytest.fixture
def top_up(fm: Callable[..., Any], mandate: str, stripe_fake: StripeFake) -> Callable[..., dict[str, Any]]:
    """Start a top-up through the RPC; returns the stored Checkout Session (as the fake recorded it)."""

    def start(amount: Any = "10.00", currency: str = "chf") -> dict[str, Any]:
        data = fm("add_top_up", mandate, {"currency": currency, "amount": amount}).data
        return stripe_fake.sessions[data["session_id"]]

    return start


def webhook_body(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


@pytest.fixture
def deliver() -> Callable[..., Any]:
    """POST an event to /stripe/webhook, signed with the configured secret unless ``signature`` is given."""
    client = Client()

    def post(event: dict[str, Any] | bytes, *, signature: str | None = None, secret: str = WEBHOOK_SECRET) -> Any:
        body = event if isinstance(event, bytes) else webhook_body(event)
        header = sign(body, secret) if signature is None else signature
        return client.post("/stripe/webhook", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)

    return post


def stored_balance(uid: str = UID) -> dict[str, Any]:
    return balance_ref(uid).get().to_dict() or {}


def balance_events(uid: str = UID) -> list[dict[str, Any]]:
    entries = get_redis().xrange(history_key(user_channel(uid)))
    events = [json.loads(fields[b"m"]) for _, fields in entries]
    return [event for event in events if event["type"] == "balance.updated"]


def firestore_dump() -> dict[str, tuple[dict[str, Any], Any]]:
    """Every document in the emulator: path -> (data, update_time). Equal dumps mean nothing was written."""
    found: dict[str, tuple[dict[str, Any], Any]] = {}

    def walk(collections: Any) -> None:
        for collection in collections:
            for ref in collection.list_documents():
                snapshot = ref.get()
                if snapshot.exists:
                    found[ref.path] = (snapshot.to_dict(), snapshot.update_time)
                walk(ref.collections())

    walk(get_firestore().collections())
    return found
