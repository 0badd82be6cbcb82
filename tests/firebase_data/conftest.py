"""Helpers for the FIREBASE_MANAGEMENT / FIREBASE_REALTIME tests: callers that fill in user and idempotency key."""
from __future__ import annotations

import json
import uuid
from typing import Any, Callable

import pytest

from core.integrations.firebase import get_firestore
from core.integrations.redis import get_redis
from realtime.channels import history_key, user_channel

UID = "user_alice"
OTHER_UID = "user_bob"


def _caller(rpc: Callable[..., Any], namespace: str) -> Callable[..., Any]:
    def call(method: str, *args: Any, uid: str = UID, key: str | None = None, **kwargs: Any):
        return rpc(f"{namespace}.{method}", *args, user_id=uid, idempotency_key=key or uuid.uuid4().hex, kwargs=kwargs)

    return call


@pytest.fixture
def fm(rpc):
    """``fm("get_notifications", UID)`` → RpcResult of FIREBASE_MANAGEMENT.get_notifications."""
    return _caller(rpc, "FIREBASE_MANAGEMENT")


@pytest.fixture
def frt(rpc):
    return _caller(rpc, "FIREBASE_REALTIME")


@pytest.fixture
def fsdb():
    """The Firestore client (not called `db`, which is pytest-django's database fixture)."""
    return get_firestore()


def give_space(uid: str, space: str, mandate: str = "m1") -> str:
    """Make ``space`` one of ``uid``'s (a mandate whose contact_space_id it is, README "Security", rule 2)."""
    path = f"clients/{uid}/bo_clients/c1/mandates/{mandate}"
    get_firestore().document(path).set({"contact_space_id": space, "contact_space_name": space, "isactive": True})
    return path


def share_space(uid: str, space: str) -> None:
    """Share a company with ``uid`` the way its owner does: ``users/{uid}.share_settings``, written by the server."""
    get_firestore().document(f"users/{uid}").set({"share_settings": {"company_id": space}}, merge=True)


def published_events(uid: str) -> list[dict[str, Any]]:
    """Events kept in the user channel's history stream (what a reconnecting client would replay)."""
    entries = get_redis().xrange(history_key(user_channel(uid)))
    return [json.loads(fields[b"m"]) for _, fields in entries]
