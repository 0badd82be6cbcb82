"""No table: jobs live in Redis (jobs/store.py). The unmanaged model gives the admin a page, permissions and a content
type for the admin log, as registry.models.ChromaRegistration does for Chroma registrations."""
from __future__ import annotations

from django.db import models


class Job(models.Model):
    key = models.CharField(max_length=300, primary_key=True)  # the job's ref, ``<job_id>:<uid>``
    uid = models.CharField(max_length=128)
    name = models.CharField(max_length=128)

    class Meta:
        managed = False
        default_permissions = ("view", "change")
        verbose_name = "long job"

    def __str__(self) -> str:
        return f"{self.name} {self.key.split(':', 1)[0]} ({self.uid})"
