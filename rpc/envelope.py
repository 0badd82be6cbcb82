"""The /rpc request envelope (contract §1), validated strictly: a field of the wrong type is an error, never coerced.

``ENVELOPE_FIELDS`` is the single declaration. ``parse_envelope`` checks a decoded body against it (a few
microseconds: this runs on every call), and ``RpcEnvelopeSerializer`` is generated from it for the OpenAPI schema, so
the documentation cannot drift from what the gateway enforces. Unknown fields are ignored.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from rest_framework import serializers

from core.errors import InvalidApiVersion, InvalidRequest

_MISSING = object()


@dataclass(frozen=True)
class EnvelopeField:
    name: str
    kind: type  # str, int, list or dict; bool is never accepted where int is expected
    help_text: str
    required: bool = False
    default: Any = None  # a list/dict default is copied per request
    nullable: bool = True
    max_length: int | None = None

    def check(self, value: Any) -> Any:
        if value is None:
            if not self.nullable:
                raise InvalidRequest(f"{self.name}: must not be null")
            return None
        if type(value) is not self.kind:  # exact type: True is not an int, and JSON never yields subclasses
            raise InvalidRequest(f"{self.name}: must be {_KIND_TEXT[self.kind]}")
        if self.kind is str:
            if not value:
                raise InvalidRequest(f"{self.name}: must not be empty")
            if self.max_length is not None and len(value) > self.max_length:
                raise InvalidRequest(f"{self.name}: must be at most {self.max_length} characters")
            if not value.isprintable():
                raise InvalidRequest(f"{self.name}: must not contain control characters")
        return value


_KIND_TEXT = {str: "a string", int: "an integer", list: "a list", dict: "an object"}

ENVELOPE_FIELDS: tuple[EnvelopeField, ...] = (
    EnvelopeField("api_version", str, "Protocol version; only RPC_API_VERSION (default v1) is accepted.",
                  default="v1", nullable=False, max_length=16),
    EnvelopeField("method", str, "NAMESPACE.name of a registered method (see the enum and GET /rpc/methods).",
                  required=True, nullable=False, max_length=200),
    EnvelopeField("args", list, "Positional arguments, bound to the method's signature before the call.",
                  default=[], nullable=False),
    EnvelopeField("kwargs", dict, "Keyword arguments, bound to the method's signature before the call.",
                  default={}, nullable=False),
    EnvelopeField("user_id", str, "The acting user; arguments naming a user or a clients/{uid}/ path must match it.",
                  max_length=128),
    EnvelopeField("session_id", str, "Caller's session id (logged).", max_length=255),
    EnvelopeField("trace_id", str, "Echoed in the response and every log line; generated when absent.",
                  max_length=128),
    EnvelopeField("idempotency_key", str, "Required for methods that write; scoped per API client.",
                  max_length=255),
    EnvelopeField("timeout_ms", int, "Deadline in ms (default 15000, max 120000)."),
    EnvelopeField("reply_to", str, "Redis channel (prefix RPC_REPLY_PREFIX) that receives the response envelope.",
                  max_length=255),
)


# (name, field, whether its default is a list/dict to copy per request), decided once.
_PLAN = tuple((field.name, field, type(field.default) in (list, dict)) for field in ENVELOPE_FIELDS)


@dataclass(slots=True)  # not frozen: a frozen dataclass sets each of its ten fields through object.__setattr__
class Envelope:
    api_version: str
    method: str
    args: list
    kwargs: dict
    user_id: str | None
    session_id: str | None
    trace_id: str | None
    idempotency_key: str | None
    timeout_ms: int | None
    reply_to: str | None


def parse_envelope(data: Any) -> Envelope:
    """Validate a decoded JSON body; raise INVALID_REQUEST / INVALID_API_VERSION with a message naming the field."""
    if type(data) is not dict:
        raise InvalidRequest("body must be a JSON object")
    values: dict[str, Any] = {}
    for name, field, copy_default in _PLAN:
        value = data.get(name, _MISSING)
        if value is _MISSING:
            if field.required:
                raise InvalidRequest(f"{name}: required")
            values[name] = field.default.copy() if copy_default else field.default
        else:
            values[name] = field.check(value)
    timeout_ms = values["timeout_ms"]
    if timeout_ms is not None and not 1 <= timeout_ms <= settings.RPC_MAX_TIMEOUT_MS:
        raise InvalidRequest(f"timeout_ms: must be between 1 and {settings.RPC_MAX_TIMEOUT_MS}")
    reply_to = values["reply_to"]
    prefix = settings.RPC_REPLY_PREFIX
    if reply_to is not None and (not reply_to.startswith(prefix) or len(reply_to) == len(prefix)):
        raise InvalidRequest(f"reply_to: must start with {prefix!r}")
    if values["api_version"] != settings.RPC_API_VERSION:
        raise InvalidApiVersion(f"expected {settings.RPC_API_VERSION}")
    return Envelope(**values)


# --- OpenAPI documentation (drf-spectacular) ---------------------------------------------------------------------------
class MethodNameField(serializers.CharField):
    """The ``method`` field; rpc.schema documents it as an enum of every registered method."""

    help_text_prefix = ""  # set below from ENVELOPE_FIELDS


def _documentation_field(field: EnvelopeField) -> serializers.Field:
    options: dict[str, Any] = {"help_text": field.help_text, "required": field.required,
                               "allow_null": field.nullable}
    if not field.required and field.default is not None:
        options["default"] = field.default
    if field.name == "method":  # rpc.schema writes its description: the help text followed by the catalogue
        options.pop("help_text")
        return MethodNameField(max_length=field.max_length, **options)
    if field.kind is str:
        return serializers.CharField(max_length=field.max_length, **options)
    if field.kind is int:
        return serializers.IntegerField(min_value=1, max_value=settings.RPC_MAX_TIMEOUT_MS, **options)
    if field.kind is list:
        return serializers.ListField(child=serializers.JSONField(), **options)
    return serializers.DictField(child=serializers.JSONField(), **options)


MethodNameField.help_text_prefix = next(f.help_text for f in ENVELOPE_FIELDS if f.name == "method")

RpcEnvelopeSerializer = type(
    "RpcEnvelopeSerializer", (serializers.Serializer,),
    {"__module__": __name__, "__doc__": "The POST /rpc request body.",
     **{field.name: _documentation_field(field) for field in ENVELOPE_FIELDS}},
)


class RpcErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    retry_after_ms = serializers.IntegerField(required=False, help_text="Set on retryable codes only.")


class PublishedEventSerializer(serializers.Serializer):
    channel = serializers.CharField()
    seq = serializers.IntegerField()


class RpcResponseSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    data = serializers.JSONField(required=False, help_text="The method's result (when ok).")
    error = RpcErrorSerializer(required=False, help_text="Present when ok is false.")
    trace_id = serializers.CharField()
    events = PublishedEventSerializer(
        many=True, required=False,
        help_text="The events the call published (at most 100), absent when none: wait on the socket for their seq.")
