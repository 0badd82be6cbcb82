"""The console's pages (registered by listeners_project/admin_site.py behind ``admin_view``): thin views over
``selectors``. Every page needs the dashboard's permission (staff who may view sessions)."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from core import activity, timefmt
from core.admin_log import log_admin_action
from registry.models import Session

from . import selectors, services, users

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
                 channel_uid=channel.removeprefix(prefix) if channel.startswith(prefix := settings.LISTENERS_CHANNEL_PREFIX)
                 else "",
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


# --- one user's page -------------------------------------------------------------------------------------------------
# action -> (the permission it needs, the service that runs it)
USER_ACTIONS = {
    "disconnect": ("registry.change_session", services.disconnect_user),
    "resync": ("workflows.change_listenerstate", services.resync_user),
    "restart": ("workflows.change_listenerstate", services.restart_listeners),
}
_LEVELS = {"done": messages.SUCCESS, "requested": messages.INFO, "refused": messages.WARNING}


def user_page(request: HttpRequest, site: Any, uid: str) -> HttpResponse:
    require_console_permission(request)
    if request.method == "POST":
        return user_action(request, uid)
    found = users.user_page(uid)
    return _page(request, site, "admin/console/user.html", f"User {uid}", page=found,
                 events=[event_row_html(row) for row in found.events.events],
                 actions={name for name, (perm, _) in USER_ACTIONS.items() if request.user.has_perm(perm)})


def user_action(request: HttpRequest, uid: str) -> HttpResponse:
    """POST only (the admin's CSRF check applies): run one action, say what happened, and log it."""
    require_console_permission(request)
    name = request.POST.get("action", "")
    if name not in USER_ACTIONS:
        messages.warning(request, "Choose an action.")
    else:
        permission, action = USER_ACTIONS[name]
        if not request.user.has_perm(permission):
            raise PermissionDenied
        outcome = action(uid=uid)
        # The admin log names the user through the sessions model ("*": all of the user's sessions and sockets).
        user = Session(key=Session.key_of(uid, "*"), user_id=uid, session_id="*")
        log_admin_action(request, [user], f"{name.capitalize()} of the user by staff: {outcome.status}.")
        messages.add_message(request, _LEVELS[outcome.status], outcome.message)
    return HttpResponseRedirect(reverse("admin:console-user", args=[uid]))


def search(request: HttpRequest, site: Any) -> HttpResponse:
    """Prefix search over uids and session ids (users.search: bounded index reads). One user found: its page."""
    require_console_permission(request)
    prefix = request.GET.get("q", "").strip()[:200]
    found = users.search(prefix) if prefix else None
    if found is not None and len({*found.uids, *(uid for uid, _ in found.sessions)}) == 1:
        only = found.uids[0] if found.uids else found.sessions[0][0]
        return HttpResponseRedirect(reverse("admin:console-user", args=[only]))
    return _page(request, site, "admin/console/search.html", "Find a user or a session", prefix=prefix, found=found)
