"""A local stand-in for the two Stripe API endpoints billing uses, plus Stripe's webhook signing scheme.

``StripeFake`` is a real HTTP server on a free loopback port; settings.STRIPE_API_BASE points stripe-python's
``StripeClient`` at it, so the client's own request encoding, headers and error handling are exercised.
Implemented: ``POST /v1/checkout/sessions`` (form-encoded, bearer auth, Idempotency-Key replay, parameter checks
like Stripe's) and ``GET /v1/checkout/sessions/{id}``. ``fail_next`` makes the next request fail with a given
status; ``event`` builds the webhook event Stripe would send for a stored session.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

_KEY_TOKEN = re.compile(r"\[([^\]]*)\]")


def sign(payload: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header: ``t=<unix>,v1=<hex HMAC-SHA256 of "t.payload" keyed by the webhook secret>``."""
    stamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


def decode_form(body: str) -> dict[str, Any]:
    """Stripe's bracketed form encoding (``line_items[0][price_data][currency]=chf``) back into nested JSON."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        head = key.split("[", 1)[0]
        parts = [head, *_KEY_TOKEN.findall(key[len(head):])]
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(root)


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _lists(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


@dataclass
class RecordedRequest:
    method: str
    path: str
    params: dict[str, Any]
    headers: dict[str, str]


@dataclass
class StripeFake:
    api_key: str
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    _by_idempotency_key: dict[str, str] = field(default_factory=dict)
    _failures: list[tuple[int, str]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "StripeFake":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                fake._handle(self)

            def do_GET(self) -> None:  # noqa: N802
                fake._handle(self)

            def log_message(self, *args: Any) -> None:
                pass  # keep test output clean; requests are recorded in fake.requests

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="stripe-fake", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.sessions.clear()
            self.requests.clear()
            self._by_idempotency_key.clear()
            self._failures.clear()

    def fail_next(self, status: int, error_type: str = "api_error") -> None:
        self._failures.append((status, error_type))

    def event(self, session_id: str, event_type: str = "checkout.session.completed", *, payment_status: str = "paid",
              event_id: str | None = None, **session_changes: Any) -> dict[str, Any]:
        """The event Stripe sends when the customer finishes (or abandons) the stored Checkout Session."""
        session = json.loads(json.dumps(self.sessions[session_id]))
        completed = event_type != "checkout.session.expired"
        session.update(
            status="complete" if completed else "expired",
            payment_status=payment_status if completed else "unpaid",
            payment_intent=f"pi_{secrets.token_hex(12)}" if completed else None,
            **session_changes,
        )
        return {
            "id": event_id or f"evt_{secrets.token_hex(12)}", "object": "event", "type": event_type,
            "api_version": "2025-09-30.clover", "created": int(time.time()), "livemode": False,
            "pending_webhooks": 1, "data": {"object": session},
        }

    # --- HTTP ---------------------------------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length).decode() if length else ""
        params = decode_form(body)
        with self._lock:
            self.requests.append(RecordedRequest(handler.command, handler.path, params, dict(handler.headers)))
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            status, error_type = failure
            return self._reply(handler, status, _error(error_type, "injected failure"))
        if handler.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._reply(handler, 401, _error("invalid_request_error", "Invalid API Key provided"))
        if handler.command == "POST" and handler.path == "/v1/checkout/sessions":
            return self._create_session(handler, params)
        match = re.fullmatch(r"/v1/checkout/sessions/(cs_[A-Za-z0-9_]+)", handler.path)
        if handler.command == "GET" and match and match.group(1) in self.sessions:
            return self._reply(handler, 200, self.sessions[match.group(1)])
        return self._reply(handler, 404, _error("invalid_request_error", "Unrecognized request URL"))

    def _create_session(self, handler: BaseHTTPRequestHandler, params: dict[str, Any]) -> None:
        key = handler.headers.get("Idempotency-Key")
        with self._lock:
            if key and key in self._by_idempotency_key:
                return self._reply(handler, 200, self.sessions[self._by_idempotency_key[key]])
        problem = _session_problem(params)
        if problem:
            return self._reply(handler, 400, _error("invalid_request_error", problem))
        item = params["line_items"][0]
        price = item["price_data"]
        session_id = f"cs_test_{secrets.token_hex(16)}"
        session = {
            "id": session_id, "object": "checkout.session", "mode": "payment", "status": "open",
            "payment_status": "unpaid", "amount_total": int(price["unit_amount"]) * int(item["quantity"]),
            "currency": price["currency"], "metadata": params.get("metadata", {}),
            "client_reference_id": params.get("client_reference_id"), "success_url": params["success_url"],
            "cancel_url": params["cancel_url"], "url": f"https://checkout.stripe.test/c/pay/{session_id}",
            "payment_intent": None, "livemode": False, "created": int(time.time()),
        }
        with self._lock:
            self.sessions[session_id] = session
            if key:
                self._by_idempotency_key[key] = session_id
        self._reply(handler, 200, session)

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("Request-Id", f"req_{secrets.token_hex(8)}")
        handler.end_headers()
        handler.wfile.write(data)


def _error(error_type: str, message: str) -> dict[str, Any]:
    return {"error": {"type": error_type, "message": message}}


def _session_problem(params: dict[str, Any]) -> str | None:
    """The checks Stripe makes that our requests could get wrong."""
    if params.get("mode") != "payment":
        return "mode must be payment"
    if not params.get("success_url") or not params.get("cancel_url"):
        return "success_url and cancel_url are required"
    items = params.get("line_items")
    if not isinstance(items, list) or len(items) != 1:
        return "one line item expected"
    price = items[0].get("price_data") or {}
    if not re.fullmatch(r"[a-z]{3}", price.get("currency", "")):
        return "Invalid currency"
    if not str(price.get("unit_amount", "")).isdigit() or int(price["unit_amount"]) < 1:
        return "unit_amount must be a positive integer"
    if not str(items[0].get("quantity", "")).isdigit():
        return "quantity must be an integer"
    return None
