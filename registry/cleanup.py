"""``cleanup_registry``: bring sessions, presence and Chroma registrations back into agreement.

Each step reads only what it must (indexed SQL, the online-users index, the Chroma registration index): no keyspace
scans, so it can run as often as wanted.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import structlog

from chroma.selectors import list_collection_registrations
from chroma.services import unregister_collection_registration
from realtime import presence

from . import selectors, services
from .models import Session

log = structlog.get_logger(__name__)

_SESSION_PREFIX = "session:"
_MAX_REGISTRATIONS = 100_000


@dataclass(frozen=True)
class CleanupReport:
    sessions_expired: int
    users_offline: int
    stale_presence_members: int
    orphan_registrations: int
    sessions_purged: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def leave_stale_session_members() -> int:
    """Presence members ``session:{id}`` whose session row is not live any more (a leave that failed midway)."""
    members = selectors.live_members_by_user(presence.online_uids())
    claimed = {
        (uid, member[len(_SESSION_PREFIX):])
        for uid, user_members in members.items()
        for member in user_members
        if member.startswith(_SESSION_PREFIX)
    }
    if not claimed:
        return 0
    live = set(
        selectors.live_sessions()
        .filter(session_id__in={session_id for _, session_id in claimed})
        .values_list("user_id", "session_id")
    )
    stale = claimed - live
    for uid, session_id in sorted(stale):
        presence.leave(uid, presence.session_member(session_id))
    return len(stale)


def unregister_orphan_registrations() -> int:
    """Chroma registrations held by a session the registry knows has ended (closed or expired)."""
    registrations = list_collection_registrations(limit=_MAX_REGISTRATIONS)
    if not registrations:
        return 0
    ended = set(
        Session.objects.filter(session_id__in={r.session_id for r in registrations})
        .exclude(pk__in=selectors.live_sessions().values("pk"))
        .values_list("session_id", flat=True)
    )
    orphans = [r for r in registrations if r.session_id in ended]
    for registration in orphans:
        unregister_collection_registration(user_id=registration.user_id, collection_name=registration.collection_name)
    return len(orphans)


def _sweep_presence() -> int:
    """Users whose every presence member expired (a process died holding them); one batch per call."""
    gone = 0
    while batch := presence.sweep():
        gone += len(batch)
    return gone


def cleanup_registry(*, retention: dt.timedelta) -> CleanupReport:
    swept = services.sweep_expired_sessions()
    offline = swept.users_left + _sweep_presence()
    report = CleanupReport(
        sessions_expired=swept.expired,
        users_offline=offline,
        stale_presence_members=leave_stale_session_members(),
        orphan_registrations=unregister_orphan_registrations(),
        sessions_purged=services.purge_ended_sessions(older_than=retention),
    )
    log.info("registry_cleanup", **report.as_dict())
    return report
