"""Staff see long jobs with their progress and cancel them (Redis state rendered from jobs.selectors, no table).

The page runs a constant number of SQL queries whatever the number of jobs: rows come from one Redis pipeline.
"""
from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils.translation import ngettext

from core.admin_log import log_admin_action
from core.runtime_admin import RedisPageAdmin
from core.errors import NotFound

from . import selectors, services
from .models import Job
from .store import ref_of
from .types import FINAL_STATUSES


@admin.register(Job)
class JobAdmin(RedisPageAdmin):
    display_limit = 500

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            return self._cancel_selected(request)
        user_id = request.GET.get("q", "").strip()
        jobs = selectors.recent_jobs(limit=self.display_limit)
        if user_id:
            jobs = [job for job in jobs if job.uid == user_id]
        rows = [{"job": job, "value": json.dumps([job.uid, job.job_id]), "active": not job.done} for job in jobs]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Long jobs",
            "rows": rows,
            "query": user_id,
            "display_limit": self.display_limit,
            "can_act": self.has_change_permission(request),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/jobs/job/change_list.html", context)

    def _cancel_selected(self, request: HttpRequest) -> HttpResponse:
        if not self.has_change_permission(request):
            raise PermissionDenied
        if request.POST.get("action") != "cancel":
            self.message_user(request, "Choose an action.", messages.WARNING)
            return HttpResponseRedirect(request.get_full_path())
        cancelled, finished = [], 0
        for value in request.POST.getlist("_selected_action"):
            try:
                uid, job_id = json.loads(value)
                job = services.cancel_job(uid=str(uid), job_id=str(job_id))
            except (ValueError, TypeError, NotFound):
                finished += 1  # expired since the page was drawn, or a tampered value
                continue
            if job.status in FINAL_STATUSES and not job.cancel_requested:
                finished += 1
            else:
                cancelled.append(Job(key=ref_of(job.uid, job.job_id), uid=job.uid, name=job.name))
        if not cancelled and not finished:
            self.message_user(request, "No job was selected.", messages.WARNING)
            return HttpResponseRedirect(request.get_full_path())
        log_admin_action(request, cancelled, "Cancelled by staff.")
        count = len(cancelled)
        text = ngettext("%(n)d job cancelled (a running one stops at its next progress report).",
                        "%(n)d jobs cancelled (running ones stop at their next progress report).", count) % {"n": count}
        if finished:
            text += " " + ngettext("%(n)d had already finished.", "%(n)d had already finished.", finished) % {
                "n": finished}
        self.message_user(request, text, messages.SUCCESS if cancelled else messages.WARNING)
        return HttpResponseRedirect(request.get_full_path())
