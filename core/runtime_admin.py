"""The admin base for runtime state kept in Redis (django-rq style): one list page with bulk actions, no add, change or
delete forms. Its pages render templates/admin/runtime_change_list.html."""
from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import path


class RedisPageAdmin(admin.ModelAdmin):
    """An admin page over Redis state: a list and bulk actions, no add/delete/change forms."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list:
        info = self.opts.app_label, self.opts.model_name
        return [path("", self.admin_site.admin_view(self.changelist_view), name="{}_{}_changelist".format(*info))]
