"""OpenAPI documentation of the RPC catalogue (drf-spectacular extensions).

The ``method`` field of the envelope is documented as an enum of every registered method, and its description is
the catalogue: each method with its parameters, whether it writes (idempotency_key required) and the first line of its
docstring. Both are computed when the schema is generated, from the same registry ``GET /rpc/methods`` reads.
"""
from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerFieldExtension
from rest_framework import serializers
from rest_framework.authentication import BaseAuthentication

from .envelope import MethodNameField
from .registry import MethodSpec, all_methods


def catalogue_markdown(methods: list[MethodSpec], intro: str = "") -> str:
    lines = [f"{intro} Catalogue (`writes` = idempotency_key required):".strip(), ""]
    for spec in methods:
        summary = " ".join(spec.doc.split("\n\n")[0].split())  # the docstring's first paragraph, on one line
        writes = " — writes" if spec.writes else ""
        lines.append(f"- `{spec.full_name}{spec.params_text()}`{writes}: {summary}".rstrip(": "))
    return "\n".join(lines)


class MethodNameFieldExtension(OpenApiSerializerFieldExtension):
    target_class = "rpc.envelope.MethodNameField"

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        methods = all_methods()
        return {
            "type": "string",
            "enum": [spec.full_name for spec in methods],
            "description": catalogue_markdown(methods, intro=MethodNameField.help_text_prefix),
        }


class BearerTokenDocumentation(BaseAuthentication):
    """Documents the bearer scheme on the RPC views; the gateway itself checks the token (rpc.auth)."""

    def authenticate(self, request: Any) -> None:
        return None

    def authenticate_header(self, request: Any) -> str:
        return "Bearer"


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "rpc.schema.BearerTokenDocumentation"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http", "scheme": "bearer",
            "description": "LISTENERS_SERVICE_TOKEN, or an API client token created in the admin (shown once).",
        }


class MethodParamSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.CharField(help_text="positional_or_keyword, keyword_only, var_positional...")
    type = serializers.CharField(required=False)
    default = serializers.JSONField(required=False)


class MethodDescriptionSerializer(serializers.Serializer):
    method = serializers.CharField()
    writes = serializers.BooleanField(help_text="true: idempotency_key is required")
    params = MethodParamSerializer(many=True)
    returns = serializers.CharField()
    timeout_ceiling_ms = serializers.IntegerField()
    scoped_by = serializers.ListField(child=serializers.CharField(),
                                      help_text="Arguments that must name the envelope's user_id")
    scopes = serializers.DictField(child=serializers.CharField(),
                                   help_text="How each argument naming tenant data belongs to the envelope's user "
                                             "(README, Security, rule 3)")
    doc = serializers.CharField()


class MethodCatalogueSerializer(serializers.Serializer):
    methods = MethodDescriptionSerializer(many=True)


class MethodsResponseSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    data = MethodCatalogueSerializer()
    trace_id = serializers.CharField()
