"""Issue 21: register, heartbeat and unregister over /rpc are one Redis round trip each, idempotency key included."""
from __future__ import annotations

import itertools
import uuid

import pytest


from .round_trips import top_level_commands

pytestmark = pytest.mark.django_db(transaction=True)  # RPC methods run on the RPC thread pool

_keys = itertools.count()


def _login_path(rpc, uid: str, sid: str) -> list:
    return [
        rpc("REGISTRY.register_user", uid, sid, user_id=uid, idempotency_key=f"reg-{next(_keys)}"),
        rpc("REGISTRY.heartbeat", sid, user_id=uid, idempotency_key=f"beat-{next(_keys)}"),
        rpc("REGISTRY.unregister_session", sid, user_id=uid, idempotency_key=f"unreg-{next(_keys)}"),
    ]


def test_register_heartbeat_and_keyed_unregister_are_one_round_trip_each(rpc, stack):
    uid = f"rt-{uuid.uuid4().hex[:10]}"
    # Warm: connections open (HELLO, CLIENT SETINFO) and scripts cached on the user's node (no NOSCRIPT fallback).
    assert [result.status for result in _login_path(rpc, uid, "warm")] == [200, 200, 200]
    for method, args, key in [("REGISTRY.register_user", (uid, "s1"), "reg"), ("REGISTRY.heartbeat", ("s1",), None),
                              ("REGISTRY.unregister_session", ("s1",), "unreg")]:
        results = []
        envelope = {"user_id": uid} | ({"idempotency_key": f"{key}-{next(_keys)}"} if key else {})
        commands = top_level_commands(stack, uid, lambda: results.append(rpc(method, *args, **envelope)))
        assert results[0].status == 200 and results[0].body["ok"], results[0].body
        assert len(commands) == 1 and commands[0].startswith("EVALSHA"), (method, commands)


def test_a_keyed_unregister_replay_is_one_round_trip_too(rpc, stack):
    uid = f"rt-{uuid.uuid4().hex[:10]}"
    _login_path(rpc, uid, "warm")
    rpc("REGISTRY.register_user", uid, "s1", user_id=uid, idempotency_key="reg-s1")
    first = rpc("REGISTRY.unregister_session", "s1", user_id=uid, idempotency_key="logout")
    replays = []
    commands = top_level_commands(stack, uid, lambda: replays.append(
        rpc("REGISTRY.unregister_session", "s1", user_id=uid, idempotency_key="logout")))
    assert replays[0].raw == first.raw and replays[0].headers.get("Idempotent-Replayed") == "true"
    assert len(commands) == 1, commands
