"""API clients in the admin: staff create one (its token is shown once), choose its namespaces, revoke it."""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import ngettext

from . import token_cache
from .models import ApiClient
from .registry import namespaces as registered_namespaces
from .services import api_client_issue_token, api_client_revoke


def _namespace_choices() -> list[tuple[str, str]]:
    return [(ApiClient.ALL_NAMESPACES, "* (every namespace, present and future)"),
            *[(name, name) for name in registered_namespaces()]]


class IdListField(forms.CharField):
    """Ids (users, companies), one per line or comma-separated, stored as a sorted list."""

    widget = forms.Textarea(attrs={"rows": 3})

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:
        text = super().to_python(value) or ""
        return sorted({uid.strip() for uid in text.replace(",", "\n").splitlines() if uid.strip()})


class ApiClientForm(forms.ModelForm):
    namespaces = forms.MultipleChoiceField(
        choices=_namespace_choices, widget=forms.CheckboxSelectMultiple,
        help_text="Namespaces this client may call. Anything else is PERMISSION_DENIED.",
    )
    bound_users = IdListField(
        required=False, label="Bound to users",
        help_text="The only user ids it may act for, one per line; empty: any user. Others are PERMISSION_DENIED.",
    )
    bound_companies = IdListField(
        required=False, label="Bound to companies",
        help_text="It acts only for users of these companies (space ids), one per line; empty: any company.",
    )

    class Meta:
        model = ApiClient
        fields = ["name", "namespaces", "bound_users", "bound_companies"]


class ActiveFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiClient]) -> QuerySet[ApiClient]:
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
    form = ApiClientForm
    list_display = ["name", "token_prefix", "namespace_list", "status", "last_used_at", "created_at", "created_by"]
    list_select_related = ["created_by"]
    list_filter = [ActiveFilter]
    search_fields = ["name", "token_prefix"]
    readonly_fields = ["token_prefix", "created_at", "created_by", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def get_fields(self, request: HttpRequest, obj: ApiClient | None = None) -> list[str]:
        if obj is None:  # the token does not exist yet: it is generated on save and shown once
            return ["name", "namespaces", "bound_users", "bound_companies"]
        return ["name", "namespaces", "bound_users", "bound_companies", *self.readonly_fields]

    @admin.display(description="namespaces")
    def namespace_list(self, client: ApiClient) -> str:
        return ", ".join(client.namespaces)

    @admin.display(description="status", ordering="revoked_at")
    def status(self, client: ApiClient) -> str:
        if client.revoked_at is None:
            return format_html('<span style="color:#2a7a2a">{}</span>', "active")
        return format_html('<span style="color:#a33">{}</span>', "revoked")

    def save_model(self, request: HttpRequest, obj: ApiClient, form: forms.ModelForm, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            token_cache.forget_all()  # new namespaces: this process at once, others within token_cache.TTL_S
            return
        obj.created_by = request.user
        token = api_client_issue_token(client=obj)
        # Shown once: only its SHA-256 is stored. Django's message storage carries it to the next page only.
        self.message_user(
            request,
            format_html(
                "API client “{}” created. Its token is shown only this once; copy it now: <code>{}</code>",
                obj.name, token,
            ),
            messages.WARNING,
        )

    @admin.action(description="Revoke selected API clients (their tokens stop working at once)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiClient]) -> None:
        clients = list(queryset)
        revoked = 0
        for client in clients:
            if api_client_revoke(client=client):
                self.log_change(request, client, "Revoked: its token is no longer accepted.")
                revoked += 1
        already = len(clients) - revoked
        if revoked:
            self.message_user(request, ngettext(
                "Revoked %d API client.", "Revoked %d API clients.", revoked) % revoked, messages.SUCCESS)
        if already:
            self.message_user(request, ngettext(
                "%d API client was already revoked.", "%d API clients were already revoked.", already) % already,
                messages.INFO)
