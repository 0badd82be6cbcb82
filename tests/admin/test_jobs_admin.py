"""The long-jobs page: Redis-backed rows with progress, search by user, the cancel action, constant SQL queries."""
from __future__ import annotations

import json

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from jobs import services, store

pytestmark = pytest.mark.django_db

URL = reverse("admin:jobs_job_changelist")
MAX_QUERIES = 10


def _jobs(count: int, start: int = 0) -> list:
    return [
        services.start_job(uid=f"u{n % 7}", name="testjobs.count", params={"steps": 1})
        for n in range(start, start + count)
    ]


@pytest.fixture(autouse=True)
def _kinds():
    from tests.jobs import kinds_for_tests  # noqa: F401 - registers testjobs.*


def test_lists_jobs_with_progress_and_searches_by_user(staff_client):
    first, second = _jobs(2)
    store.claim(token="t", lease_ms=60_000, ref=store.ref_of(second.uid, second.job_id))
    store.start(uid=second.uid, job_id=second.job_id, token="t", runner="r1")
    store.update(uid=second.uid, job_id=second.job_id, token="t", fields={"progress": "42", "step": "re-embedding"})
    page = staff_client.get(URL)
    assert page.status_code == 200
    rows = {row["job"].job_id: row["job"] for row in page.context["rows"]}
    assert rows[second.job_id].progress == 42 and rows[second.job_id].status == "running"
    assert b'<progress max="100" value="42">' in page.content and b"re-embedding" in page.content
    only = staff_client.get(URL + "?q=u0")
    assert [row["job"].job_id for row in only.context["rows"]] == [first.job_id]


def test_cancel_action_cancels_and_says_what_happened(staff_client):
    queued, other = _jobs(2)
    store.claim(token="t", lease_ms=60_000, ref=store.ref_of(other.uid, other.job_id))
    store.start(uid=other.uid, job_id=other.job_id, token="t", runner="r1")
    store.finish(uid=other.uid, job_id=other.job_id, token="t", fields={"status": "done"})
    selected = [json.dumps([j.uid, j.job_id]) for j in (queued, other)] + [json.dumps(["u9", "f" * 32])]
    response = staff_client.post(URL, {"action": "cancel", "_selected_action": selected})
    assert response.status_code == 302
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "1 job cancelled (a running one stops at its next progress report). 2 had already finished."
    ]
    assert store.read(queued.uid, queued.job_id).status == "cancelled"
    assert LogEntry.objects.get().change_message == "Cancelled by staff."


def test_view_only_staff_can_look_but_not_cancel(client, django_user_model):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_job"))
    client.force_login(viewer)
    (job,) = _jobs(1)
    page = client.get(URL)
    assert page.status_code == 200 and b"Cancel the selected" not in page.content
    assert client.post(URL, {"action": "cancel", "_selected_action": [json.dumps([job.uid, job.job_id])]}).status_code == 403
    assert store.read(job.uid, job.job_id).status == "queued"


def _queries(client) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(URL)
    assert response.status_code == 200
    return len(captured)


def test_changelist_query_count_is_constant(staff_client):
    _jobs(10)
    few = _queries(staff_client)
    _jobs(490, start=10)
    response = staff_client.get(URL)
    assert len(response.context["rows"]) == 500
    assert _queries(staff_client) == few <= MAX_QUERIES
