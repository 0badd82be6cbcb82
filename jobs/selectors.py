"""Reads of the job API."""
from __future__ import annotations

from core.errors import NotFound

from . import store
from .types import Job


def get_job(*, uid: str, job_id: str) -> Job:
    """One of ``uid``'s jobs; NOT_FOUND for an unknown id or another user's (the key is built from ``uid``)."""
    job = store.read(uid, job_id)
    if job is None:
        raise NotFound("no job with this job_id")
    return job


def recent_jobs(*, limit: int = 1000) -> list[Job]:
    """Every user's newest jobs, newest first (the admin's page)."""
    return store.read_index(limit=limit)
