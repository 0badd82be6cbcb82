"""workflow.*: the WorkflowListener on clients/{uid}/task_manager (Firestore emulator)."""
from __future__ import annotations

import logging

import pytest

from tests.conftest import wait_until
from tests.workflows.conftest import db, go_online, ready, synced_count, user_events

pytestmark = pytest.mark.django_db(transaction=True)


def job(number: int) -> dict:
    return {
        "document": {"initial_data": {"invoiceReference": f"INV-{number}", "currency": "EUR",
                                      "totalAmountDueVATIncluded": 100.0 + number, "not_watched": "x"}},
        "APBookeeper_step_status": {"step_extract_data": 1, "step_validate_data": 0},
    }


def workflow_events(uid: str) -> list[dict]:
    return [event for event in user_events(uid) if event["type"].startswith("workflow.")]


def test_login_with_200_jobs_emits_nothing_then_one_change_emits_exactly_that_field(worker):
    jobs = db().collection("clients/w1/task_manager")
    batch = db().batch()
    for number in range(200):
        batch.set(jobs.document(f"job{number}"), job(number))
    batch.commit()
    go_online("w1")
    wait_until(lambda: ready(worker, "w1"), timeout=30)
    wait_until(lambda: user_events("w1", "notif.sync"))
    assert workflow_events("w1") == []

    jobs.document("job42").update({"document.initial_data.currency": "CHF"})
    [event] = wait_until(lambda: workflow_events("w1"))
    assert event["type"] == "workflow.invoice_update"
    assert event["job_id"] == "job42"
    assert event["payload"] == {"invoice_changes": {"currency": "CHF"}}

    jobs.document("job7").update({"APBookeeper_step_status.step_validate_data": 3})
    step = wait_until(lambda: [e for e in workflow_events("w1") if e["type"] == "workflow.step_update"])
    assert len(step) == 1 and step[0]["job_id"] == "job7"
    assert step[0]["payload"] == {"step_changes": {"APBookeeper_step_status": {"step_validate_data": 3}}}
    jobs.document("job8").update({"document.initial_data.not_watched": "changed", "status": "other"})
    jobs.document("job9").update({"document.initial_data.sender": "ACME SA"})
    wait_until(lambda: len(workflow_events("w1")) == 3)
    assert workflow_events("w1")[-1]["payload"] == {"invoice_changes": {"sender": "ACME SA"}}
    assert [e["job_id"] for e in workflow_events("w1")] == ["job42", "job7", "job9"]


def test_a_job_created_after_login_reports_its_fields_and_a_deleted_one_nothing(worker):
    go_online("w2")
    wait_until(lambda: ready(worker, "w2"))
    jobs = db().collection("clients/w2/task_manager")
    jobs.document("new").set(job(1))
    events = wait_until(lambda: workflow_events("w2") if len(workflow_events("w2")) == 2 else None)
    invoice = next(e for e in events if e["type"] == "workflow.invoice_update")
    steps = next(e for e in events if e["type"] == "workflow.step_update")
    assert invoice["payload"]["invoice_changes"] == {"invoiceReference": "INV-1", "currency": "EUR",
                                                     "totalAmountDueVATIncluded": 101.0}
    assert steps["payload"]["step_changes"] == {"APBookeeper_step_status": {"step_extract_data": 1}}
    jobs.document("new").delete()
    jobs.document("other").set({"APBookeeper_step_status": {"s": 1}})
    wait_until(lambda: len(workflow_events("w2")) == 3)
    assert workflow_events("w2")[-1]["job_id"] == "other"


def test_the_workflow_listener_can_be_switched_off(make_worker):
    worker = make_worker(workflow_enabled=False)
    go_online("w3")
    wait_until(lambda: ready(worker, "w3"))
    assert sorted(worker.users["w3"].streams) == ["messages", "notifications"]
    db().document("clients/w3/task_manager/j").set(job(1))
    db().document("clients/w3/notifications/n").set({"read": False})
    wait_until(lambda: synced_count("w3") == 1)
    assert workflow_events("w3") == []


def test_the_original_services_workflow_log_names_are_written_once_each(worker, caplog):
    with caplog.at_level(logging.INFO, logger="workflows.listeners.jobs"):
        db().collection("clients/w5/task_manager").document("j1").set(job(1))
        go_online("w5")
        wait_until(lambda: ready(worker, "w5"))
        db().collection("clients/w5/task_manager").document("j1").update(
            {"document.initial_data.currency": "CHF", "APBookeeper_step_status.step_validate_data": 2})
        wait_until(lambda: len(workflow_events("w5")) == 2)

    def logged(name: str) -> list[dict]:
        return [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg["event"] == name
                and r.msg.get("uid") == "w5"]

    assert [len(logged(name)) for name in ("workflow_listener_start", "workflow_listener_attached",
                                           "workflow_invoice_changes", "workflow_step_changes")] == [1, 1, 1, 1]
    assert logged("workflow_invoice_changes")[0]["fields"] == ["currency"]  # names only, never the tenant's values
    assert "CHF" not in str(logged("workflow_invoice_changes"))


def test_a_replaced_workflow_listener_logs_workflow_listener_error(worker, caplog):
    go_online("w6")
    wait_until(lambda: ready(worker, "w6"))
    user = worker.users["w6"]
    doomed = user.streams["workflow"]
    with caplog.at_level(logging.WARNING, logger="workflows.user_listeners"):
        doomed.close()  # as if the server had ended it: the watchdog replaces it
        wait_until(lambda: user.streams.get("workflow") not in (None, doomed))
    errors = [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg["event"] == "workflow_listener_error"]
    assert [(e["uid"], e["reason"]) for e in errors] == [("w6", "closed")]


def test_debug_shows_the_originals_workflow_listeners_block(worker, client, service_token, settings):
    jobs = db().collection("clients/w7/task_manager")
    for number in range(3):
        jobs.document(f"j{number}").set(job(number))
    go_online("w7")
    wait_until(lambda: ready(worker, "w7"))

    def block() -> dict:
        return client.get("/debug", HTTP_AUTHORIZATION=f"Bearer {service_token}").json()["workflow_listeners"]

    expected = {"status": "ok", "enabled": True, "active_count": 1, "cache_entries": 3, "users": ["w7"]}
    wait_until(lambda: block() == expected, timeout=30)  # the worker reports on its next heartbeat
    settings.IS_PROD = True  # user ids stay out of production
    assert "users" not in block() and block()["active_count"] == 1
