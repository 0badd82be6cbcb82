"""The job runner: a pool of threads that claim queued jobs, run them, and keep their leases alive.

``manage.py run_jobs`` runs one (several processes may share the queue); ``manage.py chroma_migrate`` runs one with no
pool threads to execute its own jobs in the foreground. A keeper thread renews this runner's leases every third of the
lease TTL and recovers jobs whose lease expired elsewhere (their process died): resumable kinds are requeued and
restart from their last checkpoint, the others are marked ``error`` (README, "Long jobs").
"""
from __future__ import annotations

import os
import socket
import threading
import uuid
from typing import Any

import structlog
from django.db import close_old_connections

from core.errors import RpcError

from . import store
from .registry import JobKind, get_kind
from .services import publish_progress
from .types import CANCELLED, DONE, ERROR

log = structlog.get_logger(__name__)

DEFAULT_LEASE_TTL_S = 30.0
DEFAULT_THREADS = 2
RESUME_STEP = "resuming after a restart"
DIED_ERROR = "the process running this job stopped and the job can't be resumed"
FAILED_ERROR = "the job failed unexpectedly"  # the exception itself is logged, never published


class JobCancelled(Exception):
    """Raised in the job's thread at a progress report after ``cancel_job``."""


class LeaseLost(Exception):
    """This run no longer owns the job (its lease expired and another process took it over)."""


class RunnerStopping(Exception):
    """The runner is shutting down; a resumable job is handed back to the queue at its checkpoint."""


class JobContext:
    """What a job function gets: its parameters, the checkpoint of an earlier run, and ``progress``."""

    def __init__(self, runner: JobRunner, kind: JobKind, uid: str, job_id: str, token: str) -> None:
        job = store.read(uid, job_id)
        self._runner, self._kind, self._token = runner, kind, token
        self.uid, self.job_id = uid, job_id
        self.params: dict[str, Any] = job.params if job else {}
        self.checkpoint: dict[str, Any] | None = job.checkpoint if job else None

    def progress(self, percent: float, step: str, *, data: dict[str, Any] | None = None,
                 checkpoint: dict[str, Any] | None = None) -> None:
        """Record and publish progress (0-100); ``checkpoint`` is what a resumed run starts from.

        Raises (the runner handles them): JobCancelled, LeaseLost, RunnerStopping (resumable kinds only).
        """
        fields: dict[str, Any] = {"progress": str(max(0, min(100, int(percent)))), "step": step[:200]}
        if data is not None:
            fields["data"] = data
        if checkpoint is not None:
            fields["checkpoint"] = checkpoint
            self.checkpoint = checkpoint
        outcome = store.update(uid=self.uid, job_id=self.job_id, token=self._token, fields=fields)
        if outcome == "lost":
            raise LeaseLost
        job = store.read(self.uid, self.job_id)
        if job is not None:
            publish_progress(job)
        if outcome == "cancel":
            raise JobCancelled
        if self._runner.stopping and self._kind.resumable:
            raise RunnerStopping


class JobRunner:
    def __init__(self, *, worker_id: str | None = None, threads: int = DEFAULT_THREADS,
                 lease_ttl_s: float = DEFAULT_LEASE_TTL_S, poll_s: float = 2.0) -> None:
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.threads, self.lease_ttl_s, self.poll_s = threads, lease_ttl_s, poll_s
        self._stop = threading.Event()
        self._closed = threading.Event()
        self._leases: dict[str, str] = {}  # ref -> token of the runs in progress here
        self._lock = threading.Lock()
        self._pool: list[threading.Thread] = []
        self._keeper: threading.Thread | None = None

    @property
    def lease_ms(self) -> int:
        return int(self.lease_ttl_s * 1000)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> JobRunner:
        self._keeper = threading.Thread(target=self._keep, name=f"jobs-keeper-{self.worker_id}", daemon=True)
        self._pool = [
            threading.Thread(target=self._loop, name=f"jobs-{self.worker_id}-{n}", daemon=True)
            for n in range(self.threads)
        ]
        for thread in (self._keeper, *self._pool):
            thread.start()
        log.info("jobs_runner_start", worker_id=self.worker_id, threads=self.threads, lease_ttl_s=self.lease_ttl_s)
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop claiming; running resumable jobs go back to the queue at their next progress report."""
        self._stop.set()
        for thread in self._pool:
            thread.join(timeout_s)
        self._closed.set()  # the keeper renews leases until the last run has ended
        if self._keeper is not None:
            self._keeper.join(timeout_s)
        log.info("jobs_runner_stop", worker_id=self.worker_id)

    def run_job(self, uid: str, job_id: str) -> bool:
        """Claim this queued job and run it in the calling thread (needs ``start()`` for the lease keeper).
        False when it was not on the queue (another runner has it, or it finished)."""
        token = uuid.uuid4().hex
        ref = store.claim(token=token, lease_ms=self.lease_ms, ref=store.ref_of(uid, job_id))
        if ref is None:
            return False
        self._run(ref, token)
        return True

    def recover_expired(self) -> int:
        """Requeue, cancel or fail the jobs whose lease expired; returns how many were taken."""
        refs = store.take_expired()
        for ref in refs:
            uid, job_id = store.split_ref(ref)
            job = store.read(uid, job_id)
            if job is None:
                continue
            kind = get_kind(job.name)
            outcome = store.recover(
                uid=uid, job_id=job_id, resumable=bool(kind and kind.resumable),
                max_attempts=kind.max_attempts if kind else 0, step=RESUME_STEP, error=DIED_ERROR,
            )
            log.warning("job_recovered", job_id=job_id, uid=uid, job=job.name, outcome=outcome)
            if outcome in {"queued", CANCELLED, ERROR}:
                self._publish(uid, job_id)
        return len(refs)

    def _loop(self) -> None:
        while not self._stop.is_set():
            token = uuid.uuid4().hex
            try:
                ref = store.claim(token=token, lease_ms=self.lease_ms)
                if ref is None:
                    store.wait_for_work(self.poll_s)
                    continue
                self._run(ref, token)
            except Exception:  # noqa: BLE001 - Redis down or a bug: keep the pool alive, the lease keeper recovers
                log.exception("jobs_runner_error", worker_id=self.worker_id)
                self._stop.wait(self.poll_s)

    def _keep(self) -> None:
        while not self._closed.wait(self.lease_ttl_s / 3):
            try:
                with self._lock:
                    leases = dict(self._leases)
                for ref in store.renew(leases, lease_ms=self.lease_ms):
                    log.warning("job_lease_lost", ref=ref, worker_id=self.worker_id)
                self.recover_expired()
            except Exception:  # noqa: BLE001 - next round retries; leases outlast two missed renewals
                log.exception("jobs_keeper_error", worker_id=self.worker_id)

    def _run(self, ref: str, token: str) -> None:
        uid, job_id = store.split_ref(ref)
        with self._lock:
            self._leases[ref] = token
        try:
            if not store.start(uid=uid, job_id=job_id, token=token, runner=self.worker_id):
                return  # cancelled (or finished) while it waited
            job = store.read(uid, job_id)
            if job is None:
                return
            kind = get_kind(job.name)
            if kind is None:
                self._finish(uid, job_id, token, {"status": ERROR, "error": f"unknown job {job.name!r}"})
                return
            publish_progress(job)
            self._execute(kind, uid, job_id, token)
        finally:
            with self._lock:
                self._leases.pop(ref, None)
            store.release(ref, token)
            close_old_connections()

    def _execute(self, kind: JobKind, uid: str, job_id: str, token: str) -> None:
        log.info("job_start", job_id=job_id, uid=uid, job=kind.name, worker_id=self.worker_id)
        try:
            result = kind.func(JobContext(self, kind, uid, job_id, token))
        except JobCancelled:
            self._finish(uid, job_id, token, {"status": CANCELLED, "step": "cancelled"})
        except LeaseLost:
            log.warning("job_lease_lost", job_id=job_id, uid=uid, worker_id=self.worker_id)
        except RunnerStopping:
            outcome = store.recover(uid=uid, job_id=job_id, resumable=True, max_attempts=kind.max_attempts,
                                    step=RESUME_STEP, error=DIED_ERROR)
            log.info("job_handed_back", job_id=job_id, uid=uid, outcome=outcome)
            self._publish(uid, job_id)
        except RpcError as error:  # typed errors carry a message written for the caller
            self._finish(uid, job_id, token, {"status": ERROR, "error": error.message})
        except Exception:  # noqa: BLE001 - logged with its stack; the job shows a generic message
            log.exception("job_error", job_id=job_id, uid=uid, job=kind.name)
            self._finish(uid, job_id, token, {"status": ERROR, "error": FAILED_ERROR})
        else:
            self._finish(uid, job_id, token, {"status": DONE, "progress": "100", "step": "done",
                                              "result": result or {}})

    def _finish(self, uid: str, job_id: str, token: str, fields: dict[str, Any]) -> None:
        if store.finish(uid=uid, job_id=job_id, token=token, fields=fields):
            log.info("job_finished", job_id=job_id, uid=uid, status=fields["status"])
            self._publish(uid, job_id)

    @staticmethod
    def _publish(uid: str, job_id: str) -> None:
        job = store.read(uid, job_id)
        if job is not None:
            publish_progress(job)
