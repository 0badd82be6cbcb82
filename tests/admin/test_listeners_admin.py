"""The Active listeners admin: read-only rows, and restart/detach sent to the worker that owns each user."""
from __future__ import annotations

import json

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.urls import reverse
from django.utils import timezone

from core.integrations.redis import subscriber_count
from tests.conftest import wait_until
from workflows.models import ListenerState
from workflows.ownership import control_channel, heartbeat, lease_key

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:workflows_listenerstate_changelist")


@pytest.fixture
def worker_w1(stack):
    """Stands in for a live listeners worker ``w1``: owns u1's lease and listens on its control channel."""
    client = stack.redis_client()
    heartbeat("w1", {"users": 1}, ttl_ms=60_000)
    client.set(lease_key("u1"), "w1", px=60_000)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(control_channel("w1"))
    wait_until(lambda: subscriber_count(control_channel("w1")) == 1)
    yield pubsub
    pubsub.close()


def _state(uid: str, worker_id: str = "w1", kinds: list[str] | None = None) -> ListenerState:
    return ListenerState.objects.create(
        worker_id=worker_id, uid=uid, kinds=kinds if kinds is not None else ["messages", "notifications"],
        since=timezone.now(), restarts=2,
    )


def test_changelist_lists_listeners_per_worker_and_user(staff_client):
    _state("u1", kinds=["chat:sp/chats/t1", "messages", "notifications"])
    _state("u2", worker_id="w2", kinds=[])

    page = staff_client.get(CHANGELIST)
    assert page.status_code == 200
    assert b"chat:sp/chats/t1, messages, notifications" in page.content and b"(none open)" in page.content
    only_w2 = staff_client.get(CHANGELIST + "?worker_id=w2")
    assert [s.uid for s in only_w2.context["cl"].result_list] == ["u2"]
    assert [s.uid for s in staff_client.get(CHANGELIST + "?q=u1").context["cl"].result_list] == ["u1"]


def test_rows_are_read_only(staff_client):
    state = _state("u1")
    change_url = reverse("admin:workflows_listenerstate_change", args=[state.pk])
    assert b'name="_save"' not in staff_client.get(change_url).content
    assert staff_client.post(change_url, {"restarts": 0}).status_code == 403
    assert ListenerState.objects.get().restarts == 2


@pytest.mark.parametrize("action", ["restart", "detach"])
def test_actions_reach_the_owning_worker_and_are_logged(staff_client, worker_w1, action):
    owned, orphan = _state("u1"), _state("u9", worker_id="gone")

    response = staff_client.post(CHANGELIST, {"action": action, "_selected_action": [owned.pk, orphan.pk]}, follow=True)

    received = wait_until(lambda: worker_w1.get_message(timeout=0.2))
    assert json.loads(received["data"]) == {"action": action, "uid": "u1"}
    # This stand-in worker never rewrites the row, so the action can't see it done within its wait.
    assert [str(m) for m in response.context["messages"]] == [
        f"{action.capitalize()} requested for 1 user; not confirmed yet (reload to check).",
        "1 user has no live worker any more; nothing sent.",
    ]
    entry = LogEntry.objects.get()
    assert (entry.object_id, entry.action_flag) == (str(owned.pk), CHANGE)
    assert entry.change_message == f"{action.capitalize()} requested by staff."


def test_a_banner_warns_when_no_worker_is_alive(staff_client, stack):
    warning = "No listeners worker is alive"
    page = staff_client.get(CHANGELIST)
    assert [str(m) for m in page.context["messages"]][0].startswith(warning)
    heartbeat("w1", {"users": 0}, ttl_ms=60_000)
    page = staff_client.get(CHANGELIST)
    assert not [m for m in page.context["messages"] if str(m).startswith(warning)]


@pytest.mark.django_db(transaction=True)  # the stand-in worker writes the row from its own thread: commit it
@pytest.mark.parametrize("action", ["restart", "detach"])
def test_actions_report_completion_once_the_worker_rewrote_the_row(staff_client, worker_w1, action):
    """What the real worker does (user_listeners.restart_all / detach, then state_mirror): the row shows new
    listeners (``since`` moved, one more restart) or no open kind, and the message says the action is done."""
    import threading

    from django.db import connection

    owned = _state("u1")

    def act_as_worker() -> None:
        try:
            wait_until(lambda: worker_w1.get_message(timeout=0.2))
            rows = ListenerState.objects.filter(pk=owned.pk)
            if action == "restart":
                rows.update(since=timezone.now(), restarts=owned.restarts + 1)
            else:
                rows.update(kinds=[])
        finally:
            connection.close()

    worker = threading.Thread(target=act_as_worker)
    worker.start()
    response = staff_client.post(CHANGELIST, {"action": action, "_selected_action": [owned.pk]}, follow=True)
    worker.join()
    assert [str(m) for m in response.context["messages"]] == [f"{action.capitalize()} done for 1 user."]
