"""The admin log line every staff action writes, shared by each app's admin."""
from __future__ import annotations

from typing import Any

from django.contrib.admin.models import CHANGE, LogEntry
from django.http import HttpRequest


def log_admin_action(request: HttpRequest, objects: list[Any], message: str, flag: int = CHANGE) -> None:
    """One admin-log row per object, written in a single query."""
    if objects:
        LogEntry.objects.log_actions(
            user_id=request.user.pk, queryset=objects, action_flag=flag, change_message=message
        )
