"""``cleanup_registry``: bring sessions, presence and Chroma registrations back into agreement.

Each step reads only what it must (the shard indexes, the online-users index, the Chroma registration index, one
indexed SQL query): no keyspace scans, so it can run as often as wanted. ``plan_cleanup`` (``--dry-run``) counts what
``cleanup_registry`` would do now from the same reads, and writes nothing.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import structlog

from chroma.selectors import list_collection_registrations
from chroma.services import unregister_collection_registration
from django.utils import timezone

from core import keys
from core.integrations.redis import get_redis
from realtime import presence

from . import selectors, services, store
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


def _stale_session_members() -> set[tuple[str, str]]:
    members = selectors.live_members_by_user(presence.online_uids())
    claimed = {
        (uid, member[len(_SESSION_PREFIX):])
        for uid, user_members in members.items()
        for member in user_members
        if member.startswith(_SESSION_PREFIX)
    }
    return claimed - selectors.live_session_pairs(claimed) if claimed else set()


def leave_stale_session_members() -> int:
    """Presence members ``session:{id}`` whose session is not live any more. The session scripts change both
    together, so this only finds members written by an older version or by hand; it keeps the invariant checkable."""
    stale = _stale_session_members()
    for uid, session_id in sorted(stale):
        presence.leave(uid, presence.session_member(session_id))
    return len(stale)


def _orphan_registrations(also_ended: set[tuple[str, str]] = frozenset(), *, prune: bool = True) -> list:
    registrations = list_collection_registrations(limit=_MAX_REGISTRATIONS, prune=prune)
    if not registrations:
        return []
    held = {(r.user_id, r.session_id) for r in registrations}
    ended = set(
        SessionRecord.objects.filter(session_id__in={sid for _, sid in held}).values_list("user_id", "session_id")
    ) | (also_ended & held)
    ended -= selectors.live_session_pairs(held)
    return [r for r in registrations if (r.user_id, r.session_id) in ended]


def unregister_orphan_registrations() -> int:
    """Chroma registrations held by a session the registry knows has ended (in the history, and not live again)."""
    orphans = _orphan_registrations()
    for registration in orphans:
        unregister_collection_registration(user_id=registration.user_id, collection_name=registration.collection_name)
    return len(orphans)


def _sweep_presence() -> int:
    """Users whose every presence member expired (a process died holding them); one batch per call."""
    gone = 0
    while batch := presence.sweep():
        gone += len(batch)
    return gone


def _users_with_every_member_expired(now_ms: int) -> set[str]:
    """Who presence.sweep would take offline now: online-index entries whose latest member expired."""
    pipe = get_redis().pipeline(transaction=False)
    for shard in range(keys.USER_SHARDS):
        pipe.zrangebyscore(keys.presence_online_key(shard), "-inf", now_ms)
    return {uid.decode() for uids in pipe.execute() for uid in uids}


def plan_cleanup(*, retention: dt.timedelta) -> CleanupReport:
    """What ``cleanup_registry`` would report if run now, in the same order of steps; reads only, changes nothing."""
    now_ms = store.now_ms()
    lapsed = {(uid, sid) for uid, sid, _ in store.shard_members(live=False, limit=_MAX_REGISTRATIONS)}
    lapsed_members = {uid: {presence.session_member(sid) for u, sid in lapsed if u == uid} for uid, _ in lapsed}
    # Ending a lapsed session takes its user offline when its other live members are lapsed sessions too.
    left_by_sweep = {uid for uid, members in selectors.live_members_by_user(lapsed_members).items()
                     if set(members) <= lapsed_members[uid]}
    return CleanupReport(
        sessions_expired=len(lapsed),
        users_offline=len(left_by_sweep | _users_with_every_member_expired(now_ms)),
        stale_presence_members=len(_stale_session_members() - lapsed),
        orphan_registrations=len(_orphan_registrations(also_ended=lapsed, prune=False)),
        sessions_purged=SessionRecord.objects.filter(ended_at__lt=timezone.now() - retention).count(),
    )


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
