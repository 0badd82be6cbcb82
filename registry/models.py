"""Registered sessions (SQL rows, so the admin can filter, search and count them cheaply) and the unmanaged model
behind the Redis-backed Chroma registrations page."""
from __future__ import annotations

import datetime as dt

from django.db import models
from django.utils import timezone


class Session(models.Model):
    """One session of the Reflex app (a browser tab, a backend worker...) registered with ``REGISTRY.register_user``.

    A user may hold many. While ``status`` is online and ``expires_at`` is in the future, the session is also a member
    ``session:{session_id}`` of the user's presence in Redis (realtime.presence) with the same expiry: both are
    refreshed by ``REGISTRY.heartbeat`` and ended together, so presence and these rows agree.
    """

    class Status(models.TextChoices):
        ONLINE = "online", "online"
        EXPIRED = "expired", "expired"
        CLOSED = "closed", "closed"

    session_id = models.CharField(max_length=128, unique=True)
    user_id = models.CharField(max_length=128, db_index=True)
    backend_route = models.CharField(max_length=512, null=True, blank=True)
    authorized_companies = models.JSONField(
        null=True, blank=True, help_text="Company ids this session may see notifications of; empty means no filter."
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ONLINE)
    created_at = models.DateTimeField(default=timezone.now)
    last_heartbeat_at = models.DateTimeField(db_index=True)
    expires_at = models.DateTimeField(help_text="Past this instant without a heartbeat the session is expired.")
    ended_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-last_heartbeat_at"]
        indexes = [
            models.Index(fields=["user_id", "status"], name="registry_session_user_status"),
            models.Index(fields=["status", "expires_at"], name="registry_session_status_exp"),
        ]

    def __str__(self) -> str:
        return f"{self.session_id} ({self.user_id})"

    def state(self, now: dt.datetime | None = None) -> str:
        """online, expired or closed, as of ``now``: an online row past its expiry is expired even before the sweep."""
        if self.status == self.Status.ONLINE and self.expires_at <= (now or timezone.now()):
            return self.Status.EXPIRED.value
        return self.Status(self.status).value


class ChromaRegistration(models.Model):
    """No table: Chroma registrations live in Redis (chroma.registrations). The model gives the admin a page,
    permissions and a content type for the admin log, as django-rq does for its queues."""

    key = models.CharField(max_length=300, primary_key=True)
    user_id = models.CharField(max_length=128)
    collection_name = models.CharField(max_length=128)
    session_id = models.CharField(max_length=128)

    class Meta:
        managed = False
        default_permissions = ("view", "change")
        verbose_name = "Chroma collection registration"

    def __str__(self) -> str:
        return f"{self.collection_name} ({self.user_id})"
