"""The /rpc request envelope (contract §1), validated strictly: a field of the wrong type is an error, never coerced."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers


class _StrictMixin:
    expected: tuple[type, ...] = ()
    label_text = ""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, bool) and bool not in self.expected or not isinstance(data, self.expected):
            raise serializers.ValidationError(f"must be {self.label_text}")
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictCharField(_StrictMixin, serializers.CharField):
    expected, label_text = (str,), "a string"


class StrictIntegerField(_StrictMixin, serializers.IntegerField):
    expected, label_text = (int,), "an integer"


class StrictListField(_StrictMixin, serializers.ListField):
    expected, label_text = (list,), "a list"


class StrictDictField(_StrictMixin, serializers.DictField):
    expected, label_text = (dict,), "an object"


class RpcEnvelopeSerializer(serializers.Serializer):
    api_version = StrictCharField(required=False, default="v1", max_length=16)
    method = StrictCharField(max_length=200)
    args = StrictListField(child=serializers.JSONField(), required=False, default=list)
    kwargs = StrictDictField(child=serializers.JSONField(), required=False, default=dict)
    user_id = StrictCharField(required=False, allow_null=True, max_length=128, default=None)
    session_id = StrictCharField(required=False, allow_null=True, max_length=255, default=None)
    trace_id = StrictCharField(required=False, allow_null=True, max_length=128, default=None)
    idempotency_key = StrictCharField(required=False, allow_null=True, max_length=255, default=None)
    timeout_ms = StrictIntegerField(required=False, allow_null=True, min_value=1, default=None)
    reply_to = StrictCharField(required=False, allow_null=True, max_length=255, default=None)

    def validate_timeout_ms(self, value: int | None) -> int | None:
        if value is not None and value > settings.RPC_MAX_TIMEOUT_MS:
            raise serializers.ValidationError(f"must be at most {settings.RPC_MAX_TIMEOUT_MS}")
        return value

    def validate_reply_to(self, value: str | None) -> str | None:
        if value is not None and (not value.startswith(settings.RPC_REPLY_PREFIX) or len(value) == len(settings.RPC_REPLY_PREFIX)):
            raise serializers.ValidationError(f"must start with {settings.RPC_REPLY_PREFIX!r}")
        return value


class RpcErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    retry_after_ms = serializers.IntegerField(required=False)


class RpcResponseSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    data = serializers.JSONField(required=False)
    error = RpcErrorSerializer(required=False)
    trace_id = serializers.CharField()


def describe_errors(errors: dict[str, Any]) -> str:
    """A short, safe summary of which envelope fields are wrong (field names and our own messages only)."""
    parts = []
    for field, messages in sorted(errors.items()):
        first = messages[0] if isinstance(messages, list) and messages else messages
        if isinstance(first, dict):  # nested (list/dict children): just name the field
            first = "invalid content"
        parts.append(f"{field}: {first}")
    return "; ".join(parts)[:500]
