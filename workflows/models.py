"""The admin's view of the listeners workers: one row per (worker, user) with listeners attached.

Written only by the worker that holds the user (on attach, detach and restart, and ``last_event_at`` at most once
per user every few seconds); the rows of a worker that died are removed by the worker that takes its users over.
"""
from __future__ import annotations

from django.db import models


class ListenerState(models.Model):
    worker_id = models.CharField(max_length=200)
    uid = models.CharField(max_length=256)
    kinds = models.JSONField(default=list, help_text="Attached listener kinds, e.g. notifications, messages, chat:...")
    since = models.DateTimeField(help_text="When this worker attached the user's listeners")
    last_event_at = models.DateTimeField(null=True, blank=True, help_text="Last event published for this user")
    restarts = models.PositiveIntegerField(default=0, help_text="Listeners replaced by the watchdog or staff")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["worker_id", "uid"]
        constraints = [models.UniqueConstraint(fields=["worker_id", "uid"], name="listener_state_worker_uid")]
        indexes = [models.Index(fields=["uid"], name="listener_state_uid")]
        verbose_name = "active listener"

    def __str__(self) -> str:
        return f"{self.uid} on {self.worker_id}"
