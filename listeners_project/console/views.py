"""The console's pages (registered by listeners_project/admin_site.py behind ``admin_view``): thin views over
``selectors``. Every page needs the dashboard's permission (staff who may view sessions)."""
from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from core import activity, timefmt

from . import selectors

TAIL_POLL_MS = 2000
_MAX_EVENTS_SHOWN = 200


def require_console_permission(request: HttpRequest) -> None:
    if not request.user.has_perm("registry.view_session"):
        raise PermissionDenied


def _page(request: HttpRequest, site: Any, template: str, title: str, **context: Any) -> TemplateResponse:
    require_console_permission(request)
    return TemplateResponse(request, template, {**site.each_context(request), "title": title, **context})


def rpc_panel(request: HttpRequest, site: Any) -> TemplateResponse:
    window = activity.minutes()
    return _page(request, site, "admin/console/rpc.html", "RPC calls and errors",
                 windows=selectors.rpc_windows(window), failures=selectors.recent_failures(),
                 charts=[chart for chart in selectors.charts(window)
                         if chart.name in (activity.RPC_CALLS, activity.RPC_ERRORS)])


def workers(request: HttpRequest, site: Any) -> TemplateResponse:
    return _page(request, site, "admin/console/workers.html", "Workers",
                 listeners_workers=selectors.listeners_workers(), processes=selectors.asgi_processes())


def _event_query(request: HttpRequest) -> tuple[str, str, int]:
    channel = request.GET.get("channel", "").strip()[:300]
    type_prefix = request.GET.get("type", "").strip()[:100]
    limit = min(max(int(request.GET["limit"]), 1), _MAX_EVENTS_SHOWN) if request.GET.get("limit", "").isdigit() else 100
    return channel, type_prefix, limit


def events(request: HttpRequest, site: Any) -> TemplateResponse:
    channel, type_prefix, limit = _event_query(request)
    found = selectors.channel_events(channel, type_prefix=type_prefix, limit=limit) if channel else None
    return _page(request, site, "admin/console/events.html", "Event viewer", channel=channel, type_prefix=type_prefix,
                 found=found, rows=[event_row_html(row) for row in found.events] if found else [], poll_ms=TAIL_POLL_MS)


def events_tail(request: HttpRequest, site: Any) -> JsonResponse:
    """The live tail: events after ``after`` (oldest first), as ready-made table rows."""
    require_console_permission(request)
    channel, type_prefix, limit = _event_query(request)
    after = int(request.GET["after"]) if request.GET.get("after", "").isdigit() else 0
    found = selectors.channel_events(channel, type_prefix=type_prefix, after=after, limit=_MAX_EVENTS_SHOWN)
    return JsonResponse({"seq": found.seq, "rows": [event_row_html(row) for row in found.events]})


def event_row_html(row: selectors.EventRow) -> str:
    """One row of the viewer's table, the same for the first render and the tail (templates/admin/console)."""
    return format_html(
        '<tr data-seq="{}"><td class="gw-num">{}</td><td><code>{}</code></td><td>{}<br><span class="gw-quiet">{}'
        '</span></td><td>{}</td><td class="gw-payload"><code>{}</code></td></tr>',
        row.seq, row.seq, row.type, timefmt.clock(row.timestamp), timefmt.relative(row.timestamp),
        _trace_link(row.trace_id), row.payload,
    )


def _trace_link(trace_id: str | None) -> str:
    """The trace_id cell: a link to the RPC call or listener that caused the event (trace_views.py)."""
    if not trace_id:
        return "—"
    return format_html('<a class="gw-trace" href="{}"><code>{}</code></a>',
                       reverse("admin:console-trace", args=[trace_id]), trace_id)
