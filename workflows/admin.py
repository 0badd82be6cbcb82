"""Active listeners as their workers report them (read-only); staff restart or detach a user's listeners."""
from __future__ import annotations

from typing import Any

import redis
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.translation import ngettext

from core.admin_log import log_admin_action as _log

from .models import ListenerState
from .ownership import registered_workers
from .services import request_listener_detach, request_listener_restart


@admin.register(ListenerState)
class ListenerStateAdmin(admin.ModelAdmin):
    """Active listeners as their workers report them; staff can restart or detach a user's listeners."""

    list_display = ("uid", "worker_id", "listener_kinds", "since", "last_event_at", "restarts", "updated_at")
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

    @admin.display(description="kinds")
    def listener_kinds(self, state: ListenerState) -> str:
        return ", ".join(state.kinds or []) or "(none open)"

    def _send(self, request: HttpRequest, queryset: QuerySet[ListenerState], *, verb: str, send: Any) -> None:
        states = list(queryset)
        uids = sorted({state.uid for state in states})
        accepted = {uid for uid in uids if send(uid=uid)}
        _log(request, [s for s in states if s.uid in accepted], f"{verb.capitalize()} requested by staff.")
        if accepted:
            self.message_user(
                request,
                ngettext("%(verb)s requested for %(n)d user.", "%(verb)s requested for %(n)d users.", len(accepted))
                % {"verb": verb.capitalize(), "n": len(accepted)},
                messages.SUCCESS,
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
        self._send(request, queryset, verb="restart", send=request_listener_restart)

    @admin.action(description="Detach: close the users' listeners now", permissions=["change"])
    def detach(self, request: HttpRequest, queryset: QuerySet[ListenerState]) -> None:
        self._send(request, queryset, verb="detach", send=request_listener_detach)
