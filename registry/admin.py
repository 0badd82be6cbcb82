"""The staff console for the registry: sessions (SQL) and Chroma registrations (Redis, django-rq style).

Runtime pages are read-only; staff act through bulk actions, each answering with ``message_user`` and recorded in
the admin log. Every changelist runs a constant number of SQL queries (per-row live data comes from one pipeline).
"""
from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.models import DELETION
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.translation import ngettext

from core.admin_log import log_admin_action as _log
from chroma.selectors import list_collection_registrations
from chroma.services import unregister_collection_registration

from . import selectors, services
from .models import ChromaRegistration, Session




class SessionStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("online", "online"), ("expired", "expired"), ("closed", "closed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Session]) -> QuerySet[Session]:
        now = timezone.now()
        condition = {
            "online": lambda: selectors.live_q(now),
            "expired": lambda: selectors.expired_q(now),
            "closed": selectors.closed_q,
        }.get(self.value() or "")
        return queryset.filter(condition()) if condition else queryset


class SessionChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        """After the page's rows are read, fetch their users' open sockets in one Redis pipeline."""
        super().get_results(request)
        self.result_list = list(self.result_list)
        counts = selectors.socket_counts({session.user_id for session in self.result_list})
        for session in self.result_list:
            session.live_sockets = counts.get(session.user_id, 0)


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = (
        "session_id", "user_id", "state", "sockets", "last_heartbeat_at", "expires_at", "companies", "backend_route",
        "created_at",
    )
    list_filter = (SessionStateFilter,)
    search_fields = ("user_id__exact", "session_id__exact")
    search_help_text = "Exact user id (uid) or session id."
    list_per_page = 100
    actions = ("disconnect", "expire")
    fields = (
        "session_id", "user_id", "state", "sockets", "backend_route", "authorized_companies", "created_at",
        "last_heartbeat_at", "expires_at", "ended_at",
    )

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return SessionChangeList

    def get_readonly_fields(self, request: HttpRequest, obj: Session | None = None) -> tuple[str, ...]:
        return self.fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Session | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Session | None = None) -> bool:
        # Rows are runtime state: never edited. The change permission only gates the bulk actions.
        return obj is None and super().has_change_permission(request)

    @admin.display(description="state")
    def state(self, session: Session) -> str:
        return session.state()

    @admin.display(description="sockets of user")
    def sockets(self, session: Session) -> int:
        if not hasattr(session, "live_sockets"):  # the detail page: one user, one read
            session.live_sockets = selectors.socket_counts([session.user_id]).get(session.user_id, 0)
        return session.live_sockets

    @admin.display(description="authorized companies")
    def companies(self, session: Session) -> str:
        return ", ".join(session.authorized_companies or []) or "(no filter)"

    @admin.action(description="Disconnect: close the sessions and every socket of their users", permissions=["change"])
    def disconnect(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        sessions = list(queryset)
        closed = services.disconnect_sessions(sessions=sessions)
        users = len({session.user_id for session in sessions})
        _log(request, sessions, "Disconnected by staff: session closed, its user's sockets closed.")
        self.message_user(
            request,
            ngettext("%(closed)d session closed", "%(closed)d sessions closed", closed) % {"closed": closed}
            + "; "
            + ngettext("sockets of %(users)d user disconnected.", "sockets of %(users)d users disconnected.", users)
            % {"users": users},
            messages.SUCCESS,
        )

    @admin.action(description="Expire: end the sessions now (sockets stay open)", permissions=["change"])
    def expire(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        sessions = list(queryset)
        expired = services.end_sessions(sessions=sessions, status=Session.Status.EXPIRED)
        _log(request, sessions, "Expired by staff.")
        skipped = len(sessions) - expired
        text = ngettext("%(n)d session expired.", "%(n)d sessions expired.", expired) % {"n": expired}
        if skipped:
            text += " " + ngettext(
                "%(n)d was already closed.", "%(n)d were already closed.", skipped
            ) % {"n": skipped}
        self.message_user(request, text, messages.SUCCESS if expired else messages.WARNING)


@admin.register(ChromaRegistration)
class ChromaRegistrationAdmin(admin.ModelAdmin):
    """Registrations live in Redis: this admin renders them from ``chroma.selectors`` (no table, like django-rq)."""

    display_limit = 1000

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list:
        info = self.opts.app_label, self.opts.model_name
        return [path("", self.admin_site.admin_view(self.changelist_view), name="{}_{}_changelist".format(*info))]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            return self._unregister_selected(request)
        user_id = request.GET.get("q", "").strip()
        registrations = list_collection_registrations(user_id=user_id or None, limit=self.display_limit)
        states = self._session_states({r.session_id for r in registrations})
        rows = [
            {
                "registration": r,
                "session_state": states.get(r.session_id, "not registered"),
                "value": json.dumps([r.user_id, r.collection_name]),
            }
            for r in registrations
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Chroma collection registrations",
            "rows": rows,
            "query": user_id,
            "display_limit": self.display_limit,
            "can_unregister": self.has_change_permission(request),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/registry/chromaregistration/change_list.html", context)

    @staticmethod
    def _session_states(session_ids: set[str]) -> dict[str, str]:
        now = timezone.now()
        sessions = Session.objects.filter(session_id__in=session_ids)
        return {session.session_id: session.state(now) for session in sessions}

    def _unregister_selected(self, request: HttpRequest) -> HttpResponse:
        if not self.has_change_permission(request):
            raise PermissionDenied
        if request.POST.get("action") != "unregister":
            self.message_user(request, "Choose an action.", messages.WARNING)
            return HttpResponseRedirect(request.get_full_path())
        selected = []
        for value in request.POST.getlist("_selected_action"):
            try:
                user_id, collection_name = json.loads(value)
            except (ValueError, TypeError):
                continue
            if isinstance(user_id, str) and isinstance(collection_name, str):
                selected.append((user_id, collection_name))
        if not selected:
            self.message_user(request, "No registration was selected.", messages.WARNING)
            return HttpResponseRedirect(request.get_full_path())
        removed = [
            ChromaRegistration(
                key=f"{user_id}:{collection_name}", user_id=user_id, collection_name=collection_name, session_id=""
            )
            for user_id, collection_name in selected
            if unregister_collection_registration(user_id=user_id, collection_name=collection_name)
        ]
        _log(request, removed, "Unregistered by staff.", flag=DELETION)
        gone = len(selected) - len(removed)
        count = len(removed)
        text = ngettext("%(n)d registration removed.", "%(n)d registrations removed.", count) % {"n": count}
        if gone:
            text += " " + ngettext("%(n)d had already expired.", "%(n)d had already expired.", gone) % {"n": gone}
        self.message_user(request, text, messages.SUCCESS if removed else messages.WARNING)
        return HttpResponseRedirect(request.get_full_path())
