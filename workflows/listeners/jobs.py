"""``workflow``: the user's jobs (Firestore ``task_manager``) → ``workflow.invoice_update`` / ``workflow.step_update``.

The original service's WorkflowListener; the kind keeps its name ("workflow": stream key, ListenerState kinds, the
``kind`` metric label) and is switched off with ``WORKFLOW_LISTENER_ENABLED``.
"""
from __future__ import annotations

import structlog
from google.cloud.firestore_v1.query import Query

from core.integrations.firebase import get_firestore
from realtime.events import WORKFLOW_INVOICE_UPDATE, WORKFLOW_STEP_UPDATE

from .. import events
from ..config import ListenersConfig
from ..firestore_targets import ListenTarget
from ..companies import Companies
from .base import ChangeHandler, ListenerHost, Sync, open_firestore

WORKFLOW = "workflow"

log = structlog.get_logger(__name__)


class JobsListener:
    """Publishes what changed in each job against the last state published (a bounded cache, events.WorkflowCache)."""

    kind = WORKFLOW
    filtered_by_company = False
    # The original service's log names (README, "Logs"): start, attached, invoice/step changes, and this one, which
    # UserListeners writes when the listener fails to open or is replaced.
    error_event = "workflow_listener_error"

    def __init__(self, host: ListenerHost) -> None:
        self._host = host
        self.cache = events.WorkflowCache(max_jobs=host.ctx.config.workflow_cache_jobs)
        self.ready = False  # the cache is seeded: the first snapshot after attach

    @staticmethod
    def enabled(config: ListenersConfig) -> bool:
        return config.workflow_enabled

    def open(self, on_change: ChangeHandler) -> ListenTarget:
        log.info("workflow_listener_start", uid=self._host.uid)
        jobs = Query(get_firestore().collection(f"clients/{self._host.uid}/task_manager"))
        return open_firestore(jobs, on_change, self._host.ctx)

    def apply(self, stream: ListenTarget, docs: list, changes: list) -> None:
        if not stream.seeded:
            stream.seeded = True
            states = {doc.id: events.job_state(doc.to_dict() or {}) for doc in docs}
            if not self.ready:
                # First snapshot after attach: it seeds the cache and emits nothing (the original emitted both
                # events for every job at every login).
                for job_id, state in states.items():
                    self.cache.put(job_id, state)
                self.ready = True
                log.info("workflow_listener_attached", uid=self._host.uid, jobs=len(states))
                return
            # A replacement listener: report only what changed while the previous one was down.
            self.cache.keep_only(set(states))
            for job_id, state in states.items():
                self._publish_changes(job_id, state)
            return
        for change in changes:
            job_id = change.document.id
            if change.type.name == "REMOVED":
                self.cache.forget(job_id)
            else:
                self._publish_changes(job_id, events.job_state(change.document.to_dict() or {}))

    def _publish_changes(self, job_id: str, state: events.JobState) -> None:
        before = self.cache.get(job_id)
        invoice = events.invoice_changes(before, state)
        steps = events.step_changes(before, state)
        if invoice:  # field names only in the log: the values are the tenant's invoice data
            log.info("workflow_invoice_changes", uid=self._host.uid, job_id=job_id, fields=sorted(invoice))
            self._host.publish(WORKFLOW_INVOICE_UPDATE, {"invoice_changes": invoice}, job_id=job_id)
        if steps:
            log.info("workflow_step_changes", uid=self._host.uid, job_id=job_id, steps=sorted(steps))
            self._host.publish(WORKFLOW_STEP_UPDATE, {"step_changes": {events.STEP_STATUS_FIELD: steps}},
                               job_id=job_id)
        self.cache.put(job_id, state)

    def sync_payload(self, companies: Companies) -> Sync:
        return None  # jobs are only ever reported as changes
