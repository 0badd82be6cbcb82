"""Listeners worker fixtures: an in-process worker on the session's real services, and event readers.

Events are read back from each channel's history stream (the publisher keeps the last 300 per channel), so a test
sees exactly what was published, in order, without racing a subscription.
"""
from __future__ import annotations

import json
import uuid
from typing import Any, Callable, Iterator

import pytest

from core import tenancy
from core.integrations.firebase import get_firestore
from core.integrations.redis import get_redis
from realtime import presence
from realtime.channels import chat_channel, history_key, user_channel
from workflows.config import ListenersConfig
from workflows.worker import ListenersWorker



def channel_events(channel: str, event_type: str | None = None) -> list[dict[str, Any]]:
    entries = get_redis().xrange(history_key(channel))
    found = [json.loads(fields[b"m"]) for _, fields in entries]
    return [event for event in found if event_type is None or event["type"] == event_type]


def user_events(uid: str, event_type: str | None = None) -> list[dict[str, Any]]:
    return channel_events(user_channel(uid), event_type)


def chat_events(uid: str, space_code: str, thread_key: str, event_type: str | None = None) -> list[dict[str, Any]]:
    return channel_events(chat_channel(uid, space_code, thread_key), event_type)


def give_space(uid: str, space_code: str) -> None:
    """Make ``space_code`` one of the user's spaces: a mandate of theirs names it (core/tenancy.py)."""
    get_firestore().document(f"clients/{uid}/bo_clients/c-{space_code}/mandates/m-{space_code}").set(
        {"contact_space_id": space_code, "isactive": True})
    tenancy.forget_user_spaces(uid)


def go_online(uid: str, member: str | None = None) -> str:
    member = member or presence.session_member(uuid.uuid4().hex)
    presence.join(uid, member)
    return member


def db():
    return get_firestore()


WorkerFactory = Callable[..., ListenersWorker]


@pytest.fixture
def make_worker() -> Iterator[WorkerFactory]:
    """Start in-process workers (stopped after the test); short timings so tests stay fast."""
    started: list[ListenersWorker] = []

    def make(**overrides: Any) -> ListenersWorker:
        settings = {"worker_id": f"test-{uuid.uuid4().hex[:8]}", "lease_ttl_s": 3.0, "detach_grace_s": 1.0,
                    "members_refresh_s": 0.5, "state_flush_s": 0.2, **overrides}
        worker = ListenersWorker(ListenersConfig.from_settings(**settings)).start()
        started.append(worker)
        return worker

    yield make
    for worker in started:
        worker.stop()


@pytest.fixture
def worker(make_worker: WorkerFactory) -> ListenersWorker:
    return make_worker()


def ready(worker: ListenersWorker, uid: str) -> bool:
    user = worker.users.get(uid)
    return user is not None and user.ready


def last_payload(uid: str, event_type: str) -> dict[str, Any] | None:
    """The payload of the user's latest event of this type, or None before there is one."""
    found = user_events(uid, event_type)
    return found[-1]["payload"] if found else None


def synced_count(uid: str, event_type: str = "notif.sync") -> int | None:
    payload = last_payload(uid, event_type)
    return None if payload is None else payload["count"]
