"""Unmanaged models behind the Redis-backed admin pages (live sessions, Chroma registrations) and the SQL history of
ended sessions."""
from __future__ import annotations

import datetime as dt

from django.db import models
from django.utils import timezone


class Session(models.Model):
    """No table: registered sessions live in Redis (registry.store), one hash per session. The model gives the admin
    a page, permissions and a content type for the admin log, as ChromaRegistration does.

    ``key`` is ``"<uid>/<session_id>"``: session ids are a per-user namespace, and '/' is in neither id.
    """

    key = models.CharField(max_length=300, primary_key=True)
    session_id = models.CharField(max_length=128)
    user_id = models.CharField(max_length=128)
    backend_route = models.CharField(max_length=512, null=True, blank=True)
    authorized_companies = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField()
    last_heartbeat_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        managed = False
        default_permissions = ("view", "change")
        verbose_name = "live session"

    def __str__(self) -> str:
        return f"{self.session_id} ({self.user_id})"

    @staticmethod
    def key_of(user_id: str, session_id: str) -> str:
        return f"{user_id}/{session_id}"

    def state(self, now: dt.datetime | None = None) -> str:
        return "online" if self.expires_at > (now or timezone.now()) else "expired"


class SessionRecord(models.Model):
    """The audit history of ended sessions: what must outlive Redis. Written in batches by the sweeper
    (registry.services.flush_session_history), never on a request path."""

    class Status(models.TextChoices):
        EXPIRED = "expired", "expired"
        CLOSED = "closed", "closed"

    session_id = models.CharField(max_length=128)
    user_id = models.CharField(max_length=128)
    backend_route = models.CharField(max_length=512, null=True, blank=True)
    authorized_companies = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices)
    created_at = models.DateTimeField()
    last_heartbeat_at = models.DateTimeField()
    ended_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-ended_at"]
        verbose_name = "ended session"
        indexes = [models.Index(fields=["user_id", "ended_at"], name="registry_rec_user_ended")]
        constraints = [  # a record pushed back after a failed flush is written once
            models.UniqueConstraint(fields=["user_id", "session_id", "created_at"], name="registry_rec_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.session_id} ({self.user_id})"


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
