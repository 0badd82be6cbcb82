"""Active listeners as their workers report them (read-only); staff restart or detach a user's listeners, and the
action waits (a few seconds at most) for the workers' rows to show it done, so the message says what happened."""
from __future__ import annotations

import datetime as dt
import time
from typing import Any

import redis
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import ngettext

from core import admin_links, timefmt
from core.admin_log import log_admin_action as _log

from .models import ListenerState
from .ownership import registered_workers
from .services import request_listener_detach, request_listener_restart


@admin.register(ListenerState)
class ListenerStateAdmin(admin.ModelAdmin):
    """Active listeners as their workers report them; staff can restart or detach a user's listeners."""

    list_display = ("user_link", "worker_id", "listener_kinds", "since_age", "last_event_age", "restarts", "updated_at")
    list_filter = ("worker_id",)
    search_fields = ("uid__exact",)
    search_help_text = "Exact user id (uid)."
    list_per_page = 100
    actions = ("restart", "detach")

    def get_readonly_fields(self, request: HttpRequest, obj: ListenerState | None = None) -> list[str]:
        return [field.name for field in self.opts.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ListenerState | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ListenerState | None = None) -> bool:
        return obj is None and super().has_change_permission(request)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if request.method == "GET":
            self._warn_when_no_worker_is_alive(request)
        return super().changelist_view(request, extra_context)

    def _warn_when_no_worker_is_alive(self, request: HttpRequest) -> None:
        """A banner, as django-celery-beat shows for a missing scheduler: rows can outlive a stopped fleet."""
        try:
            alive = any(registered_workers().values())
        except (redis.RedisError, OSError):
            self.message_user(request, "Redis is unreachable: worker liveness unknown.", messages.WARNING)
            return
        if not alive:
            self.message_user(
                request, "No listeners worker is alive: no user has listeners attached (run manage.py run_listeners).",
                messages.WARNING,
            )

    @admin.display(description="uid", ordering="uid")
    def user_link(self, state: ListenerState) -> str:
        return admin_links.user_link(state.uid)

    @admin.display(description="since", ordering="since")
    def since_age(self, state: ListenerState) -> str:
        return _with_age(state.since)

    @admin.display(description="last event", ordering="last_event_at")
    def last_event_age(self, state: ListenerState) -> str:
        return _with_age(state.last_event_at)

    @admin.display(description="kinds")
    def listener_kinds(self, state: ListenerState) -> str:
        return ", ".join(state.kinds or []) or "(none open)"

    def _send(self, request: HttpRequest, queryset: QuerySet[ListenerState], *, verb: str, send: Any,
              done: Any) -> None:
        states = list(queryset)
        uids = sorted({state.uid for state in states})
        requested_at = timezone.now()
        accepted = {uid for uid in uids if send(uid=uid)}
        _log(request, [s for s in states if s.uid in accepted], f"{verb.capitalize()} requested by staff.")
        if accepted:
            confirmed = _wait_for(lambda: done(accepted, requested_at))
            pending = len(accepted) - confirmed
            if confirmed:
                self.message_user(
                    request,
                    ngettext("%(verb)s done for %(n)d user.", "%(verb)s done for %(n)d users.", confirmed)
                    % {"verb": verb.capitalize(), "n": confirmed},
                    messages.SUCCESS,
                )
            if pending:
                self.message_user(
                    request,
                    ngettext("%(verb)s requested for %(n)d user; not confirmed yet (reload to check).",
                             "%(verb)s requested for %(n)d users; not confirmed yet (reload to check).", pending)
                    % {"verb": verb.capitalize(), "n": pending},
                    messages.INFO,
                )
        missed = len(uids) - len(accepted)
        if missed:
            self.message_user(
                request,
                ngettext("%(n)d user has no live worker any more; nothing sent.",
                         "%(n)d users have no live worker any more; nothing sent.", missed) % {"n": missed},
                messages.WARNING,
            )

    @admin.action(description="Restart: replace the users' listeners and re-sync them", permissions=["change"])
    def restart(self, request: HttpRequest, queryset: QuerySet[ListenerState]) -> None:
        self._send(request, queryset, verb="restart", send=request_listener_restart, done=_restarted)

    @admin.action(description="Detach: close the users' listeners now", permissions=["change"])
    def detach(self, request: HttpRequest, queryset: QuerySet[ListenerState]) -> None:
        self._send(request, queryset, verb="detach", send=request_listener_detach, done=_detached)


_CONFIRM_WAIT_S = 5.0  # the workers write their rows every state_flush_s (workflows/state_mirror.py), about 1 s


def _wait_for(count: Any) -> int:
    """Poll ``count()`` (done, goal) until done reaches the goal or the wait is over; the last done."""
    deadline = time.monotonic() + _CONFIRM_WAIT_S
    while True:
        value, goal = count()
        if value >= goal or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def _restarted(uids: set[str], requested_at: dt.datetime) -> tuple[int, int]:
    """A restarted user's row shows listeners started after the request (user_listeners.restart_all moves since)."""
    return ListenerState.objects.filter(uid__in=uids, since__gte=requested_at).count(), len(uids)


def _detached(uids: set[str], requested_at: dt.datetime) -> tuple[int, int]:
    """A detached user's row lists no open kind any more (or is gone)."""
    still_open = ListenerState.objects.filter(uid__in=uids).exclude(kinds=[]).values_list("uid", flat=True)
    return len(uids) - len(set(still_open)), len(uids)


def _with_age(moment: dt.datetime | None) -> str:
    if moment is None:
        return "—"
    return format_html('<time>{}</time><br><span style="color: var(--body-quiet-color)">{}</span>',
                       timefmt.clock(moment), timefmt.relative(moment))
