"""The job API: start returns at once, a runner runs the job, progress is published, the owner reads and cancels."""
from __future__ import annotations

import uuid

import pytest

from jobs import selectors, services, store
from jobs.runner import DIED_ERROR, FAILED_ERROR, JobRunner
from tests.conftest import wait_until

from .kinds_for_tests import gate


def finished(uid: str, job_id: str):
    return wait_until(lambda: (job := store.read(uid, job_id)) and job.done and job, timeout=20)


def test_a_job_returns_at_once_runs_off_the_request_and_publishes_0_to_100(runner, events, rpc):
    feed = events("u1")
    job = services.start_job(uid="u1", name="testjobs.count", params={"steps": 4})
    assert job.status == "queued" and job.progress == 0
    seen = feed.until(lambda e: e["payload"]["done"])
    progress = [e for e in seen if e["type"] == "service.progress_update"]
    assert [e["payload"]["progress"] for e in progress] == [0, 0, 0, 25, 50, 75, 100]
    assert [e["payload"]["status"] for e in progress][:2] == ["queued", "running"]
    last = progress[-1]["payload"]
    assert last == {"job_id": job.job_id, "progress": 100, "status": "done", "step": "done", "done": True,
                    "error": None, "data": {"n": 3}}
    data = rpc("REGISTRY.get_job", "u1", job.job_id, user_id="u1").data
    assert data["status"] == "done" and data["result"] == {"counted": 4} and data["attempts"] == 1
    assert data["finished_at"].endswith("Z")


def test_another_users_job_is_not_found_for_get_and_cancel(rpc):
    job = services.start_job(uid="owner", name="testjobs.count", params={"steps": 1})
    for method in ("REGISTRY.get_job", "REGISTRY.cancel_job"):
        result = rpc(method, "intruder", job.job_id, user_id="intruder", idempotency_key=uuid.uuid4().hex)
        assert result.code == "NOT_FOUND", result.body
        assert rpc(method, "owner", uuid.uuid4().hex, user_id="owner",
                   idempotency_key=uuid.uuid4().hex).code == "NOT_FOUND"
    # Naming the owner with another acting user is refused before any lookup.
    assert rpc("REGISTRY.get_job", "owner", job.job_id, user_id="intruder").code == "PERMISSION_DENIED"
    assert selectors.get_job(uid="owner", job_id=job.job_id).status == "queued"


def test_cancel_a_queued_job_at_once_and_a_running_one_at_its_next_report(runner, rpc):
    # A job stays queued only while the runner is busy: hold both pool threads first.
    holding = [services.start_job(uid="u1", name="testjobs.wait", params={"gate": f"g{n}"}) for n in range(2)]
    wait_until(lambda: all(store.read("u1", j.job_id).status == "running" for j in holding))
    queued = services.start_job(uid="u1", name="testjobs.count", params={"steps": 1})
    data = rpc("REGISTRY.cancel_job", "u1", queued.job_id, user_id="u1", idempotency_key="k1").data
    assert data["status"] == "cancelled" and data["done"] is True
    running = rpc("REGISTRY.cancel_job", "u1", holding[0].job_id, user_id="u1", idempotency_key="k2").data
    assert running["cancel_requested"] is True
    assert finished("u1", holding[0].job_id).status == "cancelled"
    gate("g1").set()
    assert finished("u1", holding[1].job_id).status == "done"
    assert store.read("u1", queued.job_id).status == "cancelled"  # never started


@pytest.mark.parametrize(("typed", "message"), [(True, "the input file has no header row"), (False, FAILED_ERROR)])
def test_a_failing_job_reports_error_without_exception_text(runner, events, typed, message):
    feed = events("u1")
    job = services.start_job(uid="u1", name="testjobs.fails", params={"typed": typed})
    last = feed.until(lambda e: e["payload"]["done"])[-1]["payload"]
    assert last["status"] == "error" and last["error"] == message and last["done"] is True
    assert "passwd" not in str(store.read("u1", job.job_id))


def test_unknown_kinds_and_unserialisable_parameters_are_refused():
    from core.errors import InvalidArgs

    with pytest.raises(InvalidArgs):
        services.start_job(uid="u1", name="testjobs.nope", params={})
    with pytest.raises(InvalidArgs):
        services.start_job(uid="u1", name="testjobs.count", params={"steps": object()})


def _claimed_by_a_process_that_dies(uid: str, name: str, params: dict) -> str:
    """What a killed runner leaves behind: the job running under a lease nobody renews."""
    job = services.start_job(uid=uid, name=name, params=params)
    token = "dead-runner"
    assert store.claim(token=token, lease_ms=300, ref=store.ref_of(uid, job.job_id))
    assert store.start(uid=uid, job_id=job.job_id, token=token, runner="dead")
    store.update(uid=uid, job_id=job.job_id, token=token, fields={"progress": "50", "checkpoint": {"next": 2}})
    return job.job_id


def test_a_resumable_job_whose_runner_died_resumes_from_its_checkpoint(events, request):
    feed = events("u1")
    job_id = _claimed_by_a_process_that_dies("u1", "testjobs.resumable", {"gate": "r1"})
    request.getfixturevalue("runner")
    done = finished("u1", job_id)
    assert done.status == "done" and done.result == {"resumed_from": 2} and done.attempts == 2
    steps = [e["payload"]["step"] for e in feed.until(lambda e: e["payload"]["done"])]
    assert "resuming after a restart" in steps


def test_a_job_that_cannot_resume_is_marked_error_visibly(events, request):
    feed = events("u1")
    job_id = _claimed_by_a_process_that_dies("u1", "testjobs.count", {"steps": 2})
    request.getfixturevalue("runner")
    last = feed.until(lambda e: e["payload"]["done"])[-1]["payload"]
    assert last["job_id"] == job_id and last["status"] == "error" and last["error"] == DIED_ERROR


def test_stopping_a_runner_hands_a_resumable_job_back_at_its_checkpoint(runner):
    job = services.start_job(uid="u1", name="testjobs.resumable", params={"gate": "r2"})
    wait_until(lambda: store.read("u1", job.job_id).step == "holding")
    runner.stop()
    handed_back = store.read("u1", job.job_id)
    assert handed_back.status == "queued" and handed_back.checkpoint == {"next": 2}
    successor = JobRunner(worker_id="successor", threads=1, lease_ttl_s=1.0, poll_s=0.2).start()
    try:
        assert finished("u1", job.job_id).result == {"resumed_from": 2}
    finally:
        successor.stop()
