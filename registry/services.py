"""Writes of the session registry. Each one keeps the SQL row and the Redis presence member in step.

Order matters when one of the two stores fails: presence is written first on register/heartbeat (a member without a
row just expires after LISTENERS_TTL_SECONDS), and left last on unregister/expiry (a row marked ended with a
member still there is found and left by the sweeper or ``cleanup_registry``).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import structlog
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from realtime import presence
from realtime.control import disconnect_user_sockets

from .models import Session

log = structlog.get_logger(__name__)

_SWEEP_BATCH = 500


class SessionNotLive(Exception):
    """The session is unknown, closed, or past its expiry; the client must register it again."""


def _ttl() -> dt.timedelta:
    return dt.timedelta(seconds=settings.LISTENERS_TTL_SECONDS)


def register_session(
    *, user_id: str, session_id: str, backend_route: str | None = None, authorized_companies: list[str] | None = None
) -> Session:
    """Create or refresh a session (idempotent by ``session_id``) and make it a presence member of its user.

    Re-registering a session id under another user moves the session: a browser tab that logs out and in as someone
    else keeps its id, and the previous user's presence member for it is left.
    """
    member = presence.session_member(session_id)
    presence.join(user_id, member)
    now = timezone.now()
    fields = {
        "user_id": user_id,
        "backend_route": backend_route,
        "authorized_companies": sorted(set(authorized_companies)) if authorized_companies is not None else None,
        "status": Session.Status.ONLINE,
        "last_heartbeat_at": now,
        "expires_at": now + _ttl(),
        "ended_at": None,
    }
    with transaction.atomic():
        # get_or_create retries the locked read when a concurrent register of the same id wins the insert.
        session, created = Session.objects.select_for_update().get_or_create(
            session_id=session_id, defaults={**fields, "created_at": now}
        )
        previous_user = None if created else session.user_id
        if not created:
            for name, value in fields.items():
                setattr(session, name, value)
            session.save(update_fields=list(fields))
    if previous_user is not None and previous_user != user_id:
        presence.leave(previous_user, member)
        log.info("registry_session_moved", session_id=session_id, from_uid=previous_user, uid=user_id)
    log.info("registry_session_registered", session_id=session_id, uid=user_id)
    return session


def heartbeat_session(*, session_id: str) -> Session:
    """Push a live session's expiry (and its presence member's) LISTENERS_TTL_SECONDS ahead."""
    now = timezone.now()
    with transaction.atomic():
        try:
            session = Session.objects.select_for_update().get(
                session_id=session_id, status=Session.Status.ONLINE, expires_at__gt=now
            )
        except Session.DoesNotExist:
            raise SessionNotLive(session_id) from None
        presence.join(session.user_id, presence.session_member(session_id))
        session.last_heartbeat_at = now
        session.expires_at = now + _ttl()
        session.save(update_fields=["last_heartbeat_at", "expires_at"])
    return session


def unregister_session(*, session_id: str) -> bool:
    """Close one session by its id: one indexed row lookup and one presence call, whatever the number of sessions.

    True when an open (online or expired) session was closed; False when it was unknown or already closed.
    """
    now = timezone.now()
    with transaction.atomic():
        try:
            session = (
                Session.objects.select_for_update()
                .exclude(status=Session.Status.CLOSED)
                .only("pk", "user_id")
                .get(session_id=session_id)  # the unique index: one row at most, whatever the table size
            )
        except Session.DoesNotExist:
            return False
        Session.objects.filter(pk=session.pk).update(status=Session.Status.CLOSED, ended_at=now, expires_at=now)
    presence.leave(session.user_id, presence.session_member(session_id))
    log.info("registry_session_unregistered", session_id=session_id, uid=session.user_id)
    return True


def end_sessions(*, sessions: list[Session], status: str) -> int:
    """Mark open sessions closed or expired now and leave their presence members; returns how many changed."""
    open_ids = [s.pk for s in sessions if s.status != Session.Status.CLOSED]
    if not open_ids:
        return 0
    now = timezone.now()
    with transaction.atomic():
        ending = list(
            Session.objects.select_for_update().filter(pk__in=open_ids).exclude(status=Session.Status.CLOSED)
            .values_list("pk", "session_id", "user_id")
        )
        Session.objects.filter(pk__in=[pk for pk, _, _ in ending]).update(status=status, ended_at=now, expires_at=now)
    for _, session_id, user_id in ending:
        presence.leave(user_id, presence.session_member(session_id))
    return len(ending)


def close_user_sockets(*, user_ids: set[str]) -> None:
    """Ask every gateway process to close these users' WebSockets (realtime/control.py)."""
    for uid in sorted(user_ids):
        disconnect_user_sockets(uid)
        log.info("registry_sockets_disconnect_requested", uid=uid)


def disconnect_sessions(*, sessions: list[Session]) -> int:
    """Staff action: close the sessions and every socket of their users, so the users go offline."""
    closed = end_sessions(sessions=sessions, status=Session.Status.CLOSED)
    close_user_sockets(user_ids={s.user_id for s in sessions})
    return closed


@dataclass(frozen=True)
class SweepResult:
    expired: int
    users_left: int


def sweep_expired_sessions(*, now: dt.datetime | None = None, batch: int = _SWEEP_BATCH) -> SweepResult:
    """Write down the sessions whose TTL passed and leave their presence members (the sweeper).

    Nothing depends on it running promptly: every read treats ``expires_at <= now`` as expired, and the presence
    member expires by itself at the same instant. It keeps the rows honest and announces the user going offline.
    """
    now = now or timezone.now()
    expired = users_left = 0
    while True:
        with transaction.atomic():
            due = list(
                Session.objects.select_for_update(skip_locked=True)
                .filter(status=Session.Status.ONLINE, expires_at__lte=now)
                .order_by("expires_at")
                .values_list("pk", "session_id", "user_id")[:batch]
            )
            Session.objects.filter(pk__in=[pk for pk, _, _ in due]).update(
                status=Session.Status.EXPIRED, ended_at=F("expires_at")
            )
        for _, session_id, user_id in due:
            users_left += presence.leave(user_id, presence.session_member(session_id))
        expired += len(due)
        if len(due) < batch:
            break
    if expired:
        log.info("registry_sessions_expired", count=expired, users_offline=users_left)
    return SweepResult(expired=expired, users_left=users_left)


def purge_ended_sessions(*, older_than: dt.timedelta) -> int:
    """Delete closed/expired rows that ended before ``now - older_than`` (the admin keeps recent history)."""
    cutoff = timezone.now() - older_than
    deleted, _ = Session.objects.filter(ended_at__lt=cutoff).exclude(status=Session.Status.ONLINE).delete()
    return deleted
