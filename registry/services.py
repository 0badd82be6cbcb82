"""Writes of the session registry: Redis first (registry.store, one script per call), SQL only for the history.

Register, heartbeat and unregister each run one script on the user's slot that changes the session, its indexes and
its presence member together; the async variants serve ``REGISTRY.*`` on the event loop (no thread hop). Ended
sessions are queued in Redis by the same scripts and written to ``SessionRecord`` in batches by the sweeper.
Session ids are logged at DEBUG only (issue 16 rule 6).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import structlog
from django.db import DatabaseError
from django.utils import timezone

from realtime.control import disconnect_user_sockets
from rpc.idempotency import ScriptWrite, keyed_script

from . import store, ws_tokens
from .models import SessionRecord
from .store import SessionInfo

log = structlog.get_logger(__name__)
# The stdlib logger behind ``log``: asking its level is a dict lookup, while a dropped structlog call still costs
# microseconds (the login path's methods run thousands of times a second).
_std_log = logging.getLogger(__name__)

_SWEEP_BATCH = 500
_HISTORY_BATCH = 500


class SessionNotLive(Exception):
    """The session is unknown (to this user), ended, or past its expiry; the client must register it again."""


@dataclass(frozen=True)
class Heartbeat:
    user_id: str
    session_id: str
    last_seen_at: dt.datetime
    expires_at: dt.datetime


def _registered(call: tuple[list[str], list], created_ms: int) -> SessionInfo:
    _, (uid, sid, _, _, now, expires, _, _, _, route, companies) = call
    return SessionInfo(
        user_id=uid, session_id=sid, backend_route=route or None,
        authorized_companies=None if companies == "" else json.loads(companies),
        created_at=store.from_ms(created_ms), last_seen_at=store.from_ms(now), expires_at=store.from_ms(expires),
    )


def _companies(authorized_companies: list[str] | None) -> list[str] | None:
    return sorted(set(authorized_companies)) if authorized_companies is not None else None


def register_session(
    *, user_id: str, session_id: str, backend_route: str | None = None, authorized_companies: list[str] | None = None
) -> SessionInfo:
    """Create or refresh the user's session ``session_id`` (idempotent) and make it a presence member.

    Another user's session with the same id is a different session and is never touched (issue 16 rule 6).
    """
    call = store.register_call(user_id, session_id, backend_route, _companies(authorized_companies))
    created = store.REGISTER(*call)
    log.debug("registry_session_registered", uid=user_id, session_id=session_id)
    return _registered(call, created)


async def aregister_session(
    *, user_id: str, session_id: str, backend_route: str | None = None, authorized_companies: list[str] | None = None
) -> SessionInfo:
    call = store.register_call(user_id, session_id, backend_route, _companies(authorized_companies))
    created = await store.REGISTER.acall(*call)
    if _std_log.isEnabledFor(logging.DEBUG):
        log.debug("registry_session_registered", uid=user_id, session_id=session_id)
    return _registered(call, created)


def _beat(call: tuple[list[str], list], created: int | None) -> Heartbeat:
    if created is None:
        raise SessionNotLive()
    _, (uid, sid, _, _, now, expires, *_rest) = call
    return Heartbeat(uid, sid, store.from_ms(now), store.from_ms(expires))


def heartbeat_session(*, user_id: str, session_id: str) -> Heartbeat:
    """Push a live session's expiry REGISTRY_SESSION_TTL ahead and its presence member LISTENERS_TTL_SECONDS."""
    call = store.heartbeat_call(user_id, session_id)
    return _beat(call, store.HEARTBEAT(*call))


async def aheartbeat_session(*, user_id: str, session_id: str) -> Heartbeat:
    call = store.heartbeat_call(user_id, session_id)
    return _beat(call, await store.HEARTBEAT.acall(*call))


def unregister_session(*, user_id: str, session_id: str) -> bool:
    """Close the user's session: True when it existed (live or lapsed), False when unknown to this user."""
    closed = store.END(*store.end_call(user_id, session_id, store.CLOSED)) >= 0
    log.debug("registry_session_unregistered", uid=user_id, session_id=session_id, closed=closed)
    return closed


async def aunregister_session(*, user_id: str, session_id: str) -> bool:
    closed = await store.END.acall(*store.end_call(user_id, session_id, store.CLOSED)) >= 0
    if _std_log.isEnabledFor(logging.DEBUG):
        log.debug("registry_session_unregistered", uid=user_id, session_id=session_id, closed=closed)
    return closed


_END_KEYED = keyed_script(*store.END_PARTS)


def unregister_script_write(user_id: str, session_id: str) -> ScriptWrite:
    """``REGISTRY.unregister_session`` with an idempotency key: the END script and its idempotency record in one
    script on the user's slot (rpc/idempotency.py), one round trip. True when the session existed, as above."""
    keys_, args = store.end_call(user_id, session_id, store.CLOSED)
    return ScriptWrite(_END_KEYED, keys_, args, results={"-1": False, "0": True, "1": True})


def end_sessions(*, sessions: Iterable[tuple[str, str]], status: str) -> int:
    """Staff: end these (uid, session_id) sessions now as ``closed`` or ``expired``, leaving their presence members
    (one pipelined round trip); returns how many still existed."""
    calls = [store.end_call(uid, sid, status) for uid, sid in dict.fromkeys(sessions)]
    ended = sum(result >= 0 for result in store.run_many(calls, store.END))
    log.info("registry_sessions_ended", status=status, count=ended)
    return ended


def close_user_sockets(*, user_ids: set[str]) -> None:
    """Ask every gateway process to close these users' WebSockets (realtime/control.py)."""
    for uid in sorted(user_ids):
        disconnect_user_sockets(uid)
        log.info("registry_sockets_disconnect_requested", uid=uid)


def disconnect_sessions(*, sessions: list[tuple[str, str]]) -> int:
    """Staff action: close the sessions and every socket of their users, so the users go offline."""
    closed = end_sessions(sessions=sessions, status=store.CLOSED)
    users = {uid for uid, _ in sessions}
    ws_tokens.revoke(users)  # before the sockets close, so a client cannot reconnect with a token it already has
    close_user_sockets(user_ids=users)
    return closed


@dataclass(frozen=True)
class SweepResult:
    expired: int
    users_left: int


def sweep_expired_sessions(*, now: dt.datetime | None = None, batch: int = _SWEEP_BATCH) -> SweepResult:
    """End the sessions whose expiry passed (leaving their presence members), then write the ended sessions queued in
    Redis to the SQL history. Run by the listeners worker every few seconds and by ``cleanup_registry``.

    Reads never depend on it: a session past its expiry is expired whether or not it was swept.
    """
    due_ms = int((now or timezone.now()).timestamp() * 1000)
    expired = users_left = 0
    while due := store.due_for_sweep(due_ms, batch):
        results = store.run_many([store.end_call(uid, sid, store.EXPIRED, due_ms) for uid, sid in due], store.END)
        expired += sum(result >= 0 for result in results)
        users_left += sum(result == 1 for result in results)
    if expired:
        log.info("registry_sessions_expired", count=expired, users_offline=users_left)
    flush_session_history()
    return SweepResult(expired=expired, users_left=users_left)


def flush_session_history(*, batch: int = _HISTORY_BATCH) -> int:
    """Write the ended sessions queued in Redis to ``SessionRecord``: one pipelined pop and one INSERT per batch.

    A failed INSERT pushes the records back, so they are written by the next flush; the unique constraint makes a
    record written twice (a crash between INSERT and commit acknowledgement) harmless.
    """
    written = 0
    while records := store.pop_history(batch):
        rows = [_history_row(record) for record in records]
        try:
            SessionRecord.objects.bulk_create(rows, batch_size=500, ignore_conflicts=True)
        except DatabaseError:
            store.push_back_history(records)
            log.warning("registry_history_write_failed", records=len(records))
            break
        written += len(rows)
    return written


def _history_row(record: dict) -> SessionRecord:
    companies = record.get("companies")
    return SessionRecord(
        session_id=record["sid"], user_id=record["uid"], backend_route=record.get("route"),
        authorized_companies=json.loads(companies) if companies else None,
        status=record["reason"], created_at=store.from_ms(record["created"]),
        last_heartbeat_at=store.from_ms(record["seen"]), ended_at=store.from_ms(record["ended"]),
    )


def purge_ended_sessions(*, older_than: dt.timedelta) -> int:
    """Delete history records that ended before ``now - older_than``."""
    deleted, _ = SessionRecord.objects.filter(ended_at__lt=timezone.now() - older_than).delete()
    return deleted
