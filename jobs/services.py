"""Writes of the job API: start, cancel, and the progress event every state change publishes."""
from __future__ import annotations

import json
import uuid
from typing import Any

import structlog

from core.errors import InvalidArgs, NotFound
from realtime.events import SERVICE_PROGRESS_UPDATE
from realtime.publisher import publish_event

from . import selectors, store
from .registry import get_kind
from .types import Job

log = structlog.get_logger(__name__)

MAX_PARAMS_BYTES = 64 * 1024  # parameters name what to work on; the work itself is read by the job


def publish_progress(job: Job) -> None:
    """``service.progress_update`` on ``user:{uid}`` (the Reflex app's bus consumer and the user's sockets)."""
    publish_event(job.uid, SERVICE_PROGRESS_UPDATE, job.event_payload())


def start_job(*, uid: str, name: str, params: dict[str, Any]) -> Job:
    """Queue a job for ``uid`` and return it at once (status ``queued``); a runner (``manage.py run_jobs``) runs it."""
    if get_kind(name) is None:
        raise InvalidArgs(f"unknown job {name!r}")
    try:
        encoded = json.dumps(params, separators=(",", ":"))
    except (TypeError, ValueError):
        raise InvalidArgs("job parameters must be JSON values") from None
    if len(encoded) > MAX_PARAMS_BYTES:
        raise InvalidArgs(f"job parameters must be at most {MAX_PARAMS_BYTES} bytes of JSON")
    job_id = uuid.uuid4().hex
    store.create(uid=uid, job_id=job_id, name=name, params=params)
    job = selectors.get_job(uid=uid, job_id=job_id)
    log.info("job_queued", job_id=job_id, uid=uid, job=name)
    publish_progress(job)  # before a runner can publish "running": the events arrive in order
    store.enqueue(store.ref_of(uid, job_id))
    return job


def cancel_job(*, uid: str, job_id: str) -> Job:
    """Cancel one of ``uid``'s jobs: a queued job at once, a running one at its next progress report (the result's
    ``cancel_requested``); a finished job is returned unchanged. Another user's job id is NOT_FOUND."""
    outcome = store.cancel(uid=uid, job_id=job_id)
    job = store.read(uid, job_id)
    if outcome == "missing" or job is None:
        raise NotFound("no job with this job_id")
    log.info("job_cancel", job_id=job_id, uid=uid, outcome=outcome)
    if outcome == "cancelled":
        publish_progress(job)
    return job
