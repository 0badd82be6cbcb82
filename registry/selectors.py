"""Reads of the session registry and of the presence it mirrors."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from realtime import presence

from .models import Session

SOCKET_MEMBER_PREFIX = "ws:"
_PIPELINE_CHUNK = 1000


def live_q(now: dt.datetime) -> Q:
    return Q(status=Session.Status.ONLINE, expires_at__gt=now)


def expired_q(now: dt.datetime) -> Q:
    """Ended by the TTL, whether or not the sweeper has written it down yet."""
    return Q(status=Session.Status.EXPIRED) | Q(status=Session.Status.ONLINE, expires_at__lte=now)


def closed_q() -> Q:
    return Q(status=Session.Status.CLOSED)


def live_sessions(*, now: dt.datetime | None = None) -> QuerySet[Session]:
    return Session.objects.filter(live_q(now or timezone.now()))


def user_sessions(*, user_id: str) -> list[Session]:
    """The user's live sessions, oldest first."""
    return list(live_sessions().filter(user_id=user_id).order_by("created_at"))


def authorized_companies(uid: str) -> list[str] | None:
    """Companies the user's live sessions may see, as a sorted union; None (no filter) when none states any.

    The listeners worker filters notifications and messages with it (the original read
    ``listeners_registry/{uid}.authorized_companies_ids``, which nothing in the service ever wrote). As there, an
    empty list filters nothing, so it is returned as None too.
    """
    union = {
        company
        for companies in live_sessions().filter(user_id=uid).values_list("authorized_companies", flat=True)
        for company in companies or ()
    }
    return sorted(union) or None


def session_counts(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Sessions per state in one query: online (live), expired (TTL passed, swept or not), closed."""
    now = now or timezone.now()
    return Session.objects.aggregate(
        online=Count("pk", filter=live_q(now)),
        expired=Count("pk", filter=expired_q(now)),
        closed=Count("pk", filter=closed_q()),
    )


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
