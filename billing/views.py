"""``POST /stripe/webhook``: Stripe's signed event delivery (HTTP, not RPC).

The signature (``Stripe-Signature``, HMAC-SHA256 with ``STRIPE_WEBHOOK_SECRET``, 5-minute tolerance) is checked by
stripe-python's own ``stripe.Webhook.construct_event`` before anything is read from the body. Replies: 200 once the
event is applied or deliberately ignored (Stripe stops retrying), 400 for a bad signature or body (nothing
changed), 409 while another delivery of the same event is being applied, 503 when no webhook secret is configured,
500 when applying failed. Stripe retries every non-2xx; applying is idempotent per event id.
"""
from __future__ import annotations

import stripe
import structlog
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .stripe_events import StripeEventOutcome, apply_stripe_event

log = structlog.get_logger(__name__)

# Stripe events are a few KB; anything much larger from an unauthenticated sender is not worth hashing.
MAX_WEBHOOK_BYTES = 512 * 1024


def _declared_length(request: HttpRequest) -> int:
    """The sender's Content-Length, checked before the body is read (an unparsable one counts as too large)."""
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return MAX_WEBHOOK_BYTES + 1


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    if not settings.STRIPE_WEBHOOK_SECRET:
        log.error("stripe_webhook_refused", reason="STRIPE_WEBHOOK_SECRET is not set")
        return JsonResponse({"error": "webhook not configured"}, status=503)
    if _declared_length(request) > MAX_WEBHOOK_BYTES or len(request.body) > MAX_WEBHOOK_BYTES:
        return JsonResponse({"error": "payload too large"}, status=413)
    try:
        event = stripe.Webhook.construct_event(
            request.body, request.headers.get("Stripe-Signature", ""), settings.STRIPE_WEBHOOK_SECRET,
        )
    except (stripe.SignatureVerificationError, ValueError):  # ValueError: not UTF-8 / not JSON
        log.warning("stripe_webhook_bad_signature")
        return JsonResponse({"error": "invalid signature or payload"}, status=400)
    try:
        outcome = apply_stripe_event(event)
    except Exception:  # reported to Stripe as a failure so it redelivers; the details stay in our log
        log.exception("stripe_webhook_failed", event_id=event.get("id"), event_type=event.get("type"))
        return JsonResponse({"error": "internal error"}, status=500)
    # in_progress: another delivery of this event is still being applied; 409 makes Stripe retry it later.
    status = 409 if outcome is StripeEventOutcome.IN_PROGRESS else 200
    return JsonResponse({"received": status == 200, "outcome": outcome.value}, status=status)
