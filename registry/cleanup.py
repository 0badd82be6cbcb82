"""``cleanup_registry``: bring sessions, presence and Chroma registrations back into agreement.

Each step reads only what it must (the shard indexes, the online-users index, the Chroma registration index, one
indexed SQL query): no keyspace scans, so it can run as often as wanted.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import structlog

from chroma.selectors import list_collection_registrations
from chroma.services import unregister_collection_registration
from realtime import presence

from . import selectors, services
from .models import SessionRecord

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
    """Presence members ``session:{id}`` whose session is not live any more. The session scripts change both
    together, so this only finds members written by an older version or by hand; it keeps the invariant checkable."""
    members = selectors.live_members_by_user(presence.online_uids())
    claimed = {
        (uid, member[len(_SESSION_PREFIX):])
        for uid, user_members in members.items()
        for member in user_members
        if member.startswith(_SESSION_PREFIX)
    }
    if not claimed:
        return 0
    stale = claimed - selectors.live_session_pairs(claimed)
    for uid, session_id in sorted(stale):
        presence.leave(uid, presence.session_member(session_id))
    return len(stale)


def unregister_orphan_registrations() -> int:
    """Chroma registrations held by a session the registry knows has ended (in the history, and not live again)."""
    registrations = list_collection_registrations(limit=_MAX_REGISTRATIONS)
    if not registrations:
        return 0
    held = {(r.user_id, r.session_id) for r in registrations}
    ended = set(
        SessionRecord.objects.filter(session_id__in={sid for _, sid in held}).values_list("user_id", "session_id")
    ) - selectors.live_session_pairs(held)
    orphans = [r for r in registrations if (r.user_id, r.session_id) in ended]
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
