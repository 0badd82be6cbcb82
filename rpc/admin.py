"""API clients in the admin: staff create one (its token is shown once), choose its namespaces, see its calls and
errors over the last hour (core/activity.py, every gateway process), revoke it (action, or the change page's button)."""
from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import ngettext

from core import activity

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


# Calls and errors per client scope over the last hour, read once per changelist or change page (one Redis round
# trip) and used by every row's column.
_calls_by_scope: ContextVar[dict[str, tuple[int, int]] | None] = ContextVar("api_client_calls", default=None)


def _calls_last_hour() -> dict[str, tuple[int, int]]:
    totals: dict[str, tuple[int, int]] = {}
    for count in activity.minutes().calls(last=activity.KEEP_MINUTES):
        calls, errors = totals.get(count.client, (0, 0))
        totals[count.client] = (calls + count.count, errors + (count.count if count.failed else 0))
    return totals


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
    list_display = ["name", "token_prefix", "namespace_list", "status", "calls_last_hour", "last_used_at", "created_at",
                    "created_by"]
    list_select_related = ["created_by"]
    list_filter = [ActiveFilter]
    search_fields = ["name", "token_prefix"]
    readonly_fields = ["token_prefix", "calls_last_hour", "created_at", "created_by", "last_used_at", "revoked_at"]
    actions = ["revoke"]
    change_form_template = "admin/rpc/apiclient/change_form.html"

    def get_urls(self) -> list:
        return [
            path("<path:object_id>/revoke/", self.admin_site.admin_view(self.revoke_view), name="rpc_apiclient_revoke"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        token = _calls_by_scope.set(_calls_last_hour())
        try:
            return _rendered(super().changelist_view(request, extra_context))
        finally:
            _calls_by_scope.reset(token)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        token = _calls_by_scope.set(_calls_last_hour())
        try:
            return _rendered(super().change_view(request, object_id, form_url, extra_context))
        finally:
            _calls_by_scope.reset(token)

    @admin.display(description="calls / errors (last hour)")
    def calls_last_hour(self, client: ApiClient) -> str:
        calls, errors = (_calls_by_scope.get() or {}).get(f"c{client.pk}", (0, 0))  # the scope rpc/auth.py gives it
        return format_html('{} / <span style="color:{}">{}</span>', calls, "#a33" if errors else "inherit", errors)

    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The change page's Revoke button (POST only, with the change permission)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        client = get_object_or_404(ApiClient, pk=object_id)
        if not self.has_change_permission(request, client):
            raise PermissionDenied
        if api_client_revoke(client=client):
            self.log_change(request, client, "Revoked: its token is no longer accepted.")
            self.message_user(request, f"Revoked API client “{client.name}”: its token stopped working.",
                              messages.SUCCESS)
        else:
            self.message_user(request, f"API client “{client.name}” was already revoked.", messages.INFO)
        return HttpResponseRedirect(reverse("admin:rpc_apiclient_change", args=[client.pk]))

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


def _rendered(response: HttpResponse) -> HttpResponse:
    """Render a TemplateResponse now, while the calls read for its rows is set (a redirect has nothing to render)."""
    render = getattr(response, "render", None)
    return render() if render is not None else response
