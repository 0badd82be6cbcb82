"""The collection registry: original keys and TTL, heartbeat semantics, tenant scoping, the admin's selector and
service."""
from __future__ import annotations

import datetime as dt
import time

import pytest

from chroma import selectors, services
from core.integrations.redis import get_redis
from tests.conftest import wait_until

pytestmark = pytest.mark.usefixtures("chroma_mode")

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def test_register_writes_the_original_hash_with_a_90_s_ttl(call, collection_name):
    data = call("register_collection_user", "user-1", collection_name, "session-a").data
    assert set(data) == {"user_id", "collection_name", "session_id", "registered_at", "last_heartbeat"}
    assert (data["user_id"], data["collection_name"], data["session_id"]) == ("user-1", collection_name, "session-a")
    dt.datetime.strptime(data["registered_at"], TIME_FORMAT)
    key = f"registry:chroma:user-1:{collection_name}"
    stored = {k.decode(): v.decode() for k, v in get_redis().hgetall(key).items()}
    assert stored == data
    assert 85 <= get_redis().ttl(key) <= 90


def test_heartbeat_refreshes_a_live_registration(call, collection_name):
    call("register_collection_user", "user-1", collection_name, "session-a")
    key = f"registry:chroma:user-1:{collection_name}"
    get_redis().expire(key, 10)
    get_redis().hset(key, "last_heartbeat", "2000-01-01T00:00:00Z")
    assert call("heartbeat_collection", "user-1", collection_name).data == {
        "user_id": "user-1", "collection_name": collection_name, "heartbeat_updated": True,
    }
    assert get_redis().ttl(key) > 80
    assert get_redis().hget(key, "last_heartbeat").decode() != "2000-01-01T00:00:00Z"


def test_heartbeat_does_not_resurrect_an_expired_registration(call, collection_name):
    call("register_collection_user", "user-1", collection_name, "session-a")
    key = f"registry:chroma:user-1:{collection_name}"
    get_redis().pexpire(key, 1)
    wait_until(lambda: not get_redis().exists(key), timeout=5)
    assert call("heartbeat_collection", "user-1", collection_name).data["heartbeat_updated"] is False
    assert not get_redis().exists(key)
    assert selectors.list_collection_registrations() == []


def test_unregister_deletes_and_reports_whether_it_existed(call, collection_name):
    call("register_collection_user", "user-1", collection_name, "session-a")
    assert call("unregister_collection_user", "user-1", collection_name).data == {
        "user_id": "user-1", "collection_name": collection_name, "unregistered": True,
    }
    assert call("unregister_collection_user", "user-1", collection_name).data["unregistered"] is False
    assert selectors.list_collection_registrations() == []


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("register_collection_user", ("user-2", "klk_space_shared", "session-x")),
        ("heartbeat_collection", ("user-2", "klk_space_shared")),
        ("unregister_collection_user", ("user-2", "klk_space_shared")),
    ],
)
def test_a_user_cannot_touch_another_users_registration(call, method, args):
    services.register_collection_user(user_id="user-2", collection_name="klk_space_shared", session_id="session-b")
    result = call(method, *args, user_id="user-1")
    assert result.status == 403 and result.code == "PERMISSION_DENIED"
    [registration] = selectors.list_collection_registrations()
    assert (registration.user_id, registration.session_id) == ("user-2", "session-b")


def test_registration_arguments_are_validated(call):
    assert call("register_collection_user", "user-1", "x", "session-a").code == "INVALID_ARGS"
    assert call("register_collection_user", "user-1", "klk_space_ok", "a/b").code == "INVALID_ARGS"
    assert call("register_collection_user", "user-1", "klk_space_ok", "").code == "INVALID_ARGS"


def test_list_collection_registrations_for_the_admin(call):
    before = time.time()
    call("register_collection_user", "user-1", "klk_space_one", "session-a", user_id="user-1")
    call("register_collection_user", "user-2", "klk_space_one", "session-b", user_id="user-2")
    call("register_collection_user", "user-2", "klk_space_two", "session-b", user_id="user-2")
    everyone = selectors.list_collection_registrations()
    assert {(r.user_id, r.collection_name, r.session_id) for r in everyone} == {
        ("user-1", "klk_space_one", "session-a"), ("user-2", "klk_space_one", "session-b"),
        ("user-2", "klk_space_two", "session-b"),
    }
    for registration in everyone:
        assert before + 80 < registration.expires_at.timestamp() <= time.time() + 90
        assert registration.last_heartbeat == registration.registered_at
    assert {r.collection_name for r in selectors.list_collection_registrations(user_id="user-2")} == {
        "klk_space_one", "klk_space_two",
    }


def test_admin_unregister_removes_it_from_the_list(call):
    call("register_collection_user", "user-1", "klk_space_one", "session-a")
    assert services.unregister_collection_registration(user_id="user-1", collection_name="klk_space_one") is True
    assert services.unregister_collection_registration(user_id="user-1", collection_name="klk_space_one") is False
    assert selectors.list_collection_registrations() == []


def test_expired_registrations_leave_the_index(call):
    call("register_collection_user", "user-1", "klk_space_one", "session-a")
    call("register_collection_user", "user-1", "klk_space_two", "session-a")
    get_redis().pexpire("registry:chroma:user-1:klk_space_one", 1)
    wait_until(lambda: [r.collection_name for r in selectors.list_collection_registrations()] == ["klk_space_two"],
               timeout=5)
    assert get_redis().zcard(services.REGISTRATION_INDEX_KEY) == 1
