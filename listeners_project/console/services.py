"""The user page's staff actions: Disconnect, Resync, Restart listeners. Each reports what it can confirm: a socket
close, a sync event or a restarted listener is "done" only once seen (bounded wait), else "requested"."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from django.utils import timezone

from realtime.channels import user_channel
from registry import services as registry_services
from registry import store, ws_tokens
from workflows import services as workflow_services
from workflows.selectors import listeners_restarted_since

from . import selectors
from .users import live_members

CONFIRM_WAIT_S = 5.0  # the worker writes its rows every state_flush_s (about 1 s); syncs are debounced up to 1 s
_SYNC_TYPES = frozenset({"notif.sync", "msg.sync"})


def wait_for(done: Callable[[], bool], timeout: float = CONFIRM_WAIT_S) -> bool:
    """Poll ``done`` until true or the wait is over (a staff action's confirmation, never a request path)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@dataclass(frozen=True)
class Outcome:
    """An action's result: ``done`` (seen), ``requested`` (sent, not seen in time) or ``refused`` (nothing to act on),
    and the sentence that says so."""

    status: str
    message: str


def _sockets(uid: str) -> int:
    return sum(not name.startswith("session:") for name, _ in live_members(uid))


def disconnect_user(*, uid: str) -> Outcome:
    """Close the user's live sessions and every socket of the user; refused when it has neither."""
    now = timezone.now()
    live = [(uid, s.session_id) for s in store.user_sessions(uid) if s.expires_at > now]
    sockets = _sockets(uid)
    if not live and not sockets:
        return Outcome("refused", f"Nothing to disconnect: {uid} has no live session and no open socket.")
    closed = registry_services.end_sessions(sessions=live, status=store.CLOSED) if live else 0
    ws_tokens.revoke({uid})  # before the sockets close, so a client cannot reconnect with a token it already has
    registry_services.close_user_sockets(user_ids={uid})
    gone = wait_for(lambda: _sockets(uid) == 0) if sockets else True
    text = f"{closed} session{'s' if closed != 1 else ''} closed; "
    if not sockets:
        return Outcome("done", text + "no socket was open.")
    if gone:
        return Outcome("done", text + f"{sockets} socket{'s' if sockets != 1 else ''} disconnected.")
    return Outcome("requested", text + f"close requested for {sockets} socket{'s' if sockets != 1 else ''}; "
                                       "not confirmed yet (reload to check).")


def resync_user(*, uid: str) -> Outcome:
    """The resync path of ``manage.py resync_user``: the owning worker publishes notif.sync and msg.sync; done once
    both are in the user channel's history after the request."""
    channel = user_channel(uid)
    before = selectors.channel_events(channel, limit=1).seq
    if not workflow_services.request_resync(uid=uid):
        return Outcome("refused", f"No listeners are attached for {uid}; nothing to re-sync (is the user online?).")

    def published() -> bool:
        found = selectors.channel_events(channel, after=before, limit=100)
        return _SYNC_TYPES <= {row.type for row in found.events}

    if wait_for(published):
        return Outcome("done", f"Resync done for {uid}: notif.sync and msg.sync published.")
    return Outcome("requested", f"Resync requested for {uid}; not confirmed yet (reload to check).")


def restart_listeners(*, uid: str) -> Outcome:
    """Replace the user's listeners on the owning worker; done once its row shows listeners started after the
    request."""
    requested_at = timezone.now()
    if not workflow_services.request_listener_restart(uid=uid):
        return Outcome("refused", f"No live worker holds {uid}'s listeners; nothing restarted.")
    if wait_for(lambda: listeners_restarted_since(uid=uid, requested_at=requested_at)):
        return Outcome("done", f"Listeners of {uid} restarted.")
    return Outcome("requested", f"Restart requested for {uid}; not confirmed yet (reload to check).")
