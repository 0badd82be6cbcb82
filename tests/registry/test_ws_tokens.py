"""/ws user tokens live only as long as the user's sessions, and a staff Disconnect revokes them (README, Security)."""
from __future__ import annotations

import asyncio

import pytest

from realtime.auth import CLOSE_UNAUTHENTICATED, authorize
from registry import services, ws_tokens
from tests.registry.sessions import lapse

pytestmark = pytest.mark.django_db(transaction=True)


def opens(uid: str, token: str) -> bool:
    return asyncio.run(authorize(uid, token, None)) is None


def test_a_token_opens_while_the_user_has_a_live_session_and_not_after_logout():
    services.register_session(user_id="t1", session_id="a")
    services.register_session(user_id="t1", session_id="b")
    token, _ = ws_tokens.issue("t1")
    assert opens("t1", token)
    services.unregister_session(user_id="t1", session_id="a")
    assert opens("t1", token)  # another session is still live
    services.unregister_session(user_id="t1", session_id="b")
    assert asyncio.run(authorize("t1", token, None)) == CLOSE_UNAUTHENTICATED


def test_a_lapsed_session_does_not_keep_a_token_alive():
    services.register_session(user_id="t2", session_id="a")
    token, _ = ws_tokens.issue("t2")
    lapse("t2", "a")
    assert not opens("t2", token)


def test_a_staff_disconnect_revokes_tokens_already_issued():
    services.register_session(user_id="t3", session_id="a")
    services.register_session(user_id="t4", session_id="a")
    old, _ = ws_tokens.issue("t3")
    untouched, _ = ws_tokens.issue("t4")
    services.disconnect_sessions(sessions=[("t3", "a")])
    services.register_session(user_id="t3", session_id="again")  # the user logs in again
    assert not opens("t3", old)
    assert opens("t3", ws_tokens.issue("t3")[0])  # a new token works
    assert opens("t4", untouched)  # other users keep theirs
