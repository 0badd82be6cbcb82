"""The admin site: Django's, plus the gateway dashboard (``/admin/dashboard/``) and the JSON it polls, and the
console's pages (listeners_project/console): RPC calls and errors, workers, the event viewer, one page per user and
the uid / session id search."""
from __future__ import annotations

from django.contrib import admin
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path

from .console import trace_views as console_traces
from .console import views as console
from .dashboard import gateway_snapshot

DASHBOARD_POLL_MS = 5000


class GatewayAdminSite(admin.AdminSite):
    site_header = "Realtime gateway"
    site_title = "Gateway admin"
    index_title = "Staff console"
    # The header's console links and the index list the apps; the sidebar's 300 px made changelists overflow 1,400 px.
    enable_nav_sidebar = False

    def get_urls(self) -> list:
        def page(view):  # noqa: ANN001, ANN202 - a console view bound to this site, behind the admin's login
            return self.admin_view(lambda request, **kwargs: view(request, self, **kwargs))

        return [
            path("dashboard/", self.admin_view(self.dashboard_view), name="dashboard"),
            path("dashboard/stats.json", self.admin_view(self.dashboard_stats_view), name="dashboard-stats"),
            path("console/rpc/", page(console.rpc_panel), name="console-rpc"),
            path("console/workers/", page(console.workers), name="console-workers"),
            path("console/events/", page(console.events), name="console-events"),
            path("console/events/tail.json", page(console.events_tail), name="console-events-tail"),
            path("console/traces/<path:trace_id>/", page(console_traces.trace), name="console-trace"),
            path("console/users/", page(console.search), name="console-search"),
            path("console/users/<str:uid>/", page(console.user_page), name="console-user"),
            *super().get_urls(),
        ]

    def dashboard_view(self, request: HttpRequest) -> TemplateResponse:
        console.require_console_permission(request)
        context = {
            **self.each_context(request),
            "title": "Gateway dashboard",
            "snapshot": gateway_snapshot(),
            "poll_ms": DASHBOARD_POLL_MS,
        }
        return TemplateResponse(request, "admin/dashboard.html", context)

    def dashboard_stats_view(self, request: HttpRequest) -> JsonResponse:
        console.require_console_permission(request)
        return JsonResponse(gateway_snapshot(), encoder=DjangoJSONEncoder)
