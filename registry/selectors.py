"""Reads of the session registry (Redis, registry.store), its SQL history, and the presence it feeds."""
from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count, Q
from django.utils import timezone

from core import keys
from core.integrations.redis import get_redis
from realtime import presence

from . import store
from .models import SessionRecord
from .store import SessionInfo

SOCKET_MEMBER_PREFIX = "ws:"
_PIPELINE_CHUNK = 1000


def user_sessions(*, user_id: str) -> list[SessionInfo]:
    """The user's live sessions, oldest first."""
    now = timezone.now()
    return sorted((s for s in store.user_sessions(user_id) if s.expires_at > now), key=lambda s: s.created_at)


def authorized_companies(uid: str) -> list[str] | None:
    """Companies the user's live sessions may see, as a sorted union; None (no filter) when none states any.

    The listeners worker filters notifications and messages with it, and reads the app's
    ``listeners_registry/{uid}.authorized_companies_ids`` when it is None (workflows/listeners/base.py). As there, an
    empty list filters nothing, so it is returned as None too.
    """
    union = {company for session in user_sessions(user_id=uid) for company in session.authorized_companies or ()}
    return sorted(union) or None


def authorized_companies_many(uids: Iterable[str]) -> dict[str, list[str] | None]:
    """``authorized_companies`` of many users in two pipelined round trips (the listeners worker's batched syncs)."""
    wanted = list(dict.fromkeys(uids))
    pipe = get_redis().pipeline(transaction=False)
    for uid in wanted:
        pipe.smembers(keys.user_sessions_key(uid))
    pairs = [(uid, sid.decode()) for uid, sids in zip(wanted, pipe.execute()) for sid in sids]
    now = timezone.now()
    union: dict[str, set[str]] = {}
    for session in store.get_sessions(pairs):
        if session.expires_at > now:
            union.setdefault(session.user_id, set()).update(session.authorized_companies or ())
    return {uid: sorted(union.get(uid, ())) or None for uid in wanted}


def live_session_pairs(pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of these (uid, session_id) are live sessions (one pipelined round trip)."""
    now = timezone.now()
    return {(s.user_id, s.session_id) for s in store.get_sessions(pairs) if s.expires_at > now}


def session_counts() -> dict[str, int]:
    """online (live), expired (lapsed, swept or not) and closed sessions: one Redis round trip and one query."""
    live = store.count_by_state()
    ended = SessionRecord.objects.aggregate(
        expired=Count("pk", filter=Q(status=SessionRecord.Status.EXPIRED)),
        closed=Count("pk", filter=Q(status=SessionRecord.Status.CLOSED)),
    )
    return {"online": live["online"], "expired": live["expired"] + ended["expired"], "closed": ended["closed"]}


def live_members_by_user(uids: Iterable[str]) -> dict[str, list[str]]:
    """Every live presence member of each uid (pipelined; see realtime.presence.live_members_many)."""
    return presence.live_members_many(uids, chunk=_PIPELINE_CHUNK)


def socket_counts(uids: Iterable[str]) -> dict[str, int]:
    """Open WebSockets per uid (the ``ws:*`` presence members), for a page of rows at once."""
    return {
        uid: sum(member.startswith(SOCKET_MEMBER_PREFIX) for member in members)
        for uid, members in live_members_by_user(uids).items()
    }


def users_online_count() -> int:
    return presence.count_online()


def total_socket_count() -> int:
    """Open WebSockets over every online user (pipelined reads of the online users' members, no keyspace scan)."""
    return sum(socket_counts(presence.online_uids()).values())
