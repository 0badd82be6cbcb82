"""The staff console for the registry: live sessions and Chroma registrations (Redis, django-rq style: unmanaged
models rendered from the stores), and the SQL history of ended sessions.

Runtime pages are read-only; staff act through bulk actions, each answering with ``message_user`` and recorded in
the admin log. Every page runs a constant number of SQL queries (Redis pages run none for their rows; per-row live
data comes from one pipeline).
"""
from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.models import DELETION
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import ngettext

from chroma.selectors import list_collection_registrations
from chroma.services import unregister_collection_registration
from core import admin_links
from core.admin_log import log_admin_action as _log
from core.runtime_admin import RedisPageAdmin

from . import selectors, services, store
from .models import ChromaRegistration, Session, SessionRecord


def _as_model(info: store.SessionInfo) -> Session:
    return Session(
        key=Session.key_of(info.user_id, info.session_id), session_id=info.session_id, user_id=info.user_id,
        backend_route=info.backend_route, authorized_companies=info.authorized_companies,
        created_at=info.created_at, last_heartbeat_at=info.last_seen_at, expires_at=info.expires_at,
    )


@admin.register(Session)
class SessionAdmin(RedisPageAdmin):
    """Live sessions (and lapsed ones the sweeper has not reached yet), latest expiry first."""

    display_limit = 1000
    states = ("online", "expired")

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            return self._act(request)
        query = request.GET.get("q", "").strip()
        state = request.GET.get("state", "")
        now = timezone.now()
        sessions = [
            _as_model(info) for info in self._find(query, state)
            if not state or info.state(now) == state
        ]
        sockets = selectors.socket_counts({s.user_id for s in sessions})
        rows = [
            {"session": s, "state": s.state(now), "sockets": sockets.get(s.user_id, 0),
             "companies": ", ".join(s.authorized_companies or []) or "(no filter)"}
            for s in sessions
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Live sessions",
            "rows": rows,
            "query": query,
            "state": state,
            "states": self.states,
            "display_limit": self.display_limit,
            "can_act": self.has_change_permission(request),
            "history_url": "admin:registry_sessionrecord_changelist",
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/registry/session/change_list.html", context)

    def _find(self, query: str, state: str) -> list[store.SessionInfo]:
        if query:  # an exact user id, or an exact session id (whoever's)
            found = store.user_sessions(query)
            entries = store.find_by_session_id(query, limit=self.display_limit)
            found += store.get_sessions((uid, sid) for uid, sid, _ in entries if uid != query)
        else:
            live = {"online": True, "expired": False}.get(state)
            entries = store.shard_members(live=live, limit=self.display_limit)
            found = store.get_sessions((uid, sid) for uid, sid, _ in entries)
        return sorted(found, key=lambda s: s.expires_at, reverse=True)[: self.display_limit]

    def _disconnect(self, request: HttpRequest, selected: list[tuple[str, str]]) -> None:
        """Only live sessions are disconnected: one that already ended (closed or expired) is refused, and its
        user's sockets, which belong to other sessions or none, stay open."""
        live = selectors.live_session_pairs(selected)
        ended = len(set(selected) - live)
        if live:
            closed = services.disconnect_sessions(sessions=sorted(live))
            users = len({uid for uid, _ in live})
            _log(request, [Session(key=Session.key_of(uid, sid), user_id=uid, session_id=sid) for uid, sid in live],
                 "Disconnected by staff: session closed, its user's sockets closed.")
            text = (
                ngettext("%(closed)d session closed", "%(closed)d sessions closed", closed) % {"closed": closed}
                + "; "
                + ngettext("sockets of %(users)d user disconnected.", "sockets of %(users)d users disconnected.", users)
                % {"users": users}
            )
            self.message_user(request, text, messages.SUCCESS)
        if ended:
            self.message_user(request, ngettext(
                "%(n)d session had already ended: nothing done for it (its user's sockets stay open).",
                "%(n)d sessions had already ended: nothing done for them (their users' sockets stay open).", ended,
            ) % {"n": ended}, messages.WARNING)

    def _act(self, request: HttpRequest) -> HttpResponse:
        if not self.has_change_permission(request):
            raise PermissionDenied
        action = request.POST.get("action")
        selected = []
        for value in request.POST.getlist("_selected_action"):
            uid, _, sid = value.partition("/")
            if uid and sid:
                selected.append((uid, sid))
        if action not in ("disconnect", "expire") or not selected:
            self.message_user(request, "Choose an action and at least one session.", messages.WARNING)
            return HttpResponseRedirect(request.get_full_path())
        if action == "disconnect":
            self._disconnect(request, selected)
        else:
            expired = services.end_sessions(sessions=selected, status=store.EXPIRED)
            _log(request, [Session(key=Session.key_of(uid, sid), user_id=uid, session_id=sid) for uid, sid in selected],
                 "Expired by staff.")
            skipped = len(selected) - expired
            text = ngettext("%(n)d session expired.", "%(n)d sessions expired.", expired) % {"n": expired}
            if skipped:
                text += " " + ngettext(
                    "%(n)d had already ended.", "%(n)d had already ended.", skipped
                ) % {"n": skipped}
            self.message_user(request, text, messages.SUCCESS if expired else messages.WARNING)
        return HttpResponseRedirect(request.get_full_path())


@admin.register(SessionRecord)
class SessionRecordAdmin(admin.ModelAdmin):
    """Ended sessions (closed by logout or staff, or expired), kept for audit; written by the sweeper."""

    list_display = ("session_link", "user_link", "status", "created_at", "last_heartbeat_at", "ended_at", "backend_route")
    list_filter = ("status",)
    search_fields = ("user_id__exact", "session_id__exact")
    search_help_text = "Exact user id (uid) or session id."
    list_per_page = 100
    show_full_result_count = False  # no COUNT(*) over the whole history on every page

    def get_readonly_fields(self, request: HttpRequest, obj: SessionRecord | None = None) -> list[str]:
        return [field.name for field in self.opts.fields]

    @admin.display(description="session id", ordering="session_id")
    def session_link(self, record: SessionRecord) -> str:
        return admin_links.session_link(record.user_id, record.session_id)

    @admin.display(description="user id", ordering="user_id")
    def user_link(self, record: SessionRecord) -> str:
        return admin_links.user_link(record.user_id)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: SessionRecord | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: SessionRecord | None = None) -> bool:
        return False


@admin.register(ChromaRegistration)
class ChromaRegistrationAdmin(RedisPageAdmin):
    """Registrations live in Redis: this admin renders them from ``chroma.selectors`` (no table, like django-rq)."""

    display_limit = 1000

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            return self._unregister_selected(request)
        user_id = request.GET.get("q", "").strip()
        registrations = list_collection_registrations(user_id=user_id or None, limit=self.display_limit)
        states = self._session_states({(r.user_id, r.session_id) for r in registrations})
        rows = [
            {
                "registration": r,
                "session_state": states.get((r.user_id, r.session_id), "not registered"),
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
            "can_act": self.has_change_permission(request),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/registry/chromaregistration/change_list.html", context)

    @staticmethod
    def _session_states(pairs: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """State of each (uid, session_id): live ones from Redis (one pipeline), ended ones from the history (one
        query)."""
        now = timezone.now()
        states = {
            (record.user_id, record.session_id): record.status
            for record in SessionRecord.objects.filter(session_id__in={sid for _, sid in pairs}).order_by("ended_at")
            if (record.user_id, record.session_id) in pairs
        }
        states.update({(s.user_id, s.session_id): s.state(now) for s in store.get_sessions(pairs)})
        return states

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
