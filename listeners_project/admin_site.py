"""The admin site: Django's, plus the gateway dashboard (``/admin/dashboard/``) and the JSON it polls."""
from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path

from .dashboard import gateway_snapshot

DASHBOARD_POLL_MS = 5000


class GatewayAdminSite(admin.AdminSite):
    site_header = "Realtime gateway"
    site_title = "Gateway admin"
    index_title = "Staff console"

    def get_urls(self) -> list:
        return [
            path("dashboard/", self.admin_view(self.dashboard_view), name="dashboard"),
            path("dashboard/stats.json", self.admin_view(self.dashboard_stats_view), name="dashboard-stats"),
            *super().get_urls(),
        ]

    @staticmethod
    def _require_dashboard_permission(request: HttpRequest) -> None:
        if not request.user.has_perm("registry.view_session"):
            raise PermissionDenied

    def dashboard_view(self, request: HttpRequest) -> TemplateResponse:
        self._require_dashboard_permission(request)
        context = {
            **self.each_context(request),
            "title": "Gateway dashboard",
            "snapshot": gateway_snapshot(),
            "poll_ms": DASHBOARD_POLL_MS,
        }
        return TemplateResponse(request, "admin/dashboard.html", context)

    def dashboard_stats_view(self, request: HttpRequest) -> JsonResponse:
        self._require_dashboard_permission(request)
        return JsonResponse(gateway_snapshot(), encoder=DjangoJSONEncoder)
