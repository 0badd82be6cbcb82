"""The one place that talks to the Stripe API (stripe-python's ``StripeClient``, never the global ``stripe.api_key``).

``STRIPE_API_BASE`` points the client at another server (tests run a local fake of the endpoints used here; a
stripe-mock works too). Stripe failures become typed RPC errors with messages of our own: Stripe's text can name
the account or the request, so it goes to the log, not to the caller.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal

import stripe
import structlog
from django.conf import settings

from core.errors import Internal, InvalidArgs, RpcError, Unavailable

from .money import to_minor_units

log = structlog.get_logger(__name__)

# Per attempt; with the retries below a call stays inside the RPC's default 15 s deadline.
_HTTP_TIMEOUT_S = 4
_NETWORK_RETRIES = 2


class PaymentsNotConfigured(Unavailable):
    default_message = "card payments are not configured on this gateway"


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str


@functools.lru_cache(maxsize=4)
def _client(api_key: str, api_base: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base} if api_base else None,
        max_network_retries=_NETWORK_RETRIES,
        http_client=stripe.RequestsClient(timeout=_HTTP_TIMEOUT_S),
    )


def payments_configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


def create_top_up_checkout(
    *, transaction_id: str, amount: Decimal, currency: str, metadata: dict[str, str]
) -> CheckoutSession:
    """A one-line-item Checkout Session for ``amount``; ``transaction_id`` doubles as Stripe's idempotency key."""
    if not payments_configured():
        raise PaymentsNotConfigured()
    client = _client(settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE)
    params = {
        "mode": "payment",
        "line_items": [{
            "price_data": {
                "currency": currency,
                "product_data": {
                    "name": "Account top-up", "description": f"Add {amount} {currency.upper()} to your balance",
                },
                "unit_amount": to_minor_units(amount, currency),
            },
            "quantity": 1,
        }],
        "client_reference_id": transaction_id,
        "metadata": metadata,
        "success_url": f"{settings.STRIPE_SUCCESS_URL}?session_id={{CHECKOUT_SESSION_ID}}",
        "cancel_url": settings.STRIPE_CANCEL_URL,
    }
    try:
        session = client.v1.checkout.sessions.create(
            params=params, options={"idempotency_key": f"top_up:{transaction_id}"},
        )
    except stripe.StripeError as exc:
        raise _rpc_error(exc) from exc
    return CheckoutSession(id=session.id, url=session.url)


def _rpc_error(exc: stripe.StripeError) -> RpcError:
    log.warning("stripe_request_failed", error_type=type(exc).__name__, http_status=exc.http_status, code=exc.code,
                request_id=exc.request_id)
    if isinstance(exc, (stripe.InvalidRequestError, stripe.CardError)):
        return InvalidArgs("the payment provider refused this top-up; check the amount and currency")
    if isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError)):
        return Unavailable("the payment provider is unreachable; try again")
    # Authentication/permission errors are our configuration, not the caller's: INTERNAL, logged above.
    return Internal()
