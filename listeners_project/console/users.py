"""Reads for the console's user page (everything about one uid) and its prefix search over uids and session ids.

The page is a fixed number of Redis round trips and SQL queries whatever the user holds: its sessions (its own set),
its presence members, its listeners (workflows.selectors), its Chroma registrations, its channel's history, and its
jobs (read from the jobs index, which the jobs page also reads: jobs have no per-user index).
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from django.utils import timezone

from chroma.selectors import CollectionRegistration, list_collection_registrations
from core import keys
from core.integrations.redis import get_redis
from jobs.selectors import recent_jobs
from jobs.types import Job
from realtime.channels import user_channel
from registry import store
from registry.models import SessionRecord
from workflows.selectors import UserListenersView, user_listeners_view

from . import selectors

EVENTS_SHOWN = 20
ENDED_SESSIONS_SHOWN = 10
JOBS_READ = 500  # the jobs page's window: the user's jobs among the newest 500
_REGISTRATIONS_READ = 1000


@dataclass(frozen=True)
class SessionRow:
    info: store.SessionInfo
    state: str  # online | expired (lapsed, not swept yet)


@dataclass(frozen=True)
class Member:
    """One live presence member: what keeps the user online."""

    kind: str  # socket | chat socket | session
    ident: str
    expires_at: dt.datetime


@dataclass(frozen=True)
class UserPage:
    uid: str
    sessions: list[SessionRow]
    ended_sessions: list[SessionRecord]
    members: list[Member]
    listeners: UserListenersView
    registrations: list[CollectionRegistration]
    channel: str
    events: selectors.ChannelEvents
    jobs: list[Job]

    @property
    def sockets(self) -> list[Member]:
        return [member for member in self.members if member.kind != "session"]

    @property
    def live_sessions(self) -> list[SessionRow]:
        return [row for row in self.sessions if row.state == "online"]

    @property
    def known(self) -> bool:
        """Anything at all about this uid, live or in the history."""
        return bool(self.sessions or self.ended_sessions or self.members or self.listeners.rows
                    or self.listeners.owner or self.registrations or self.events.seq or self.jobs)


def _member(name: str, expiry_ms: float) -> Member:
    kind, _, ident = name.partition(":")
    if kind == "ws":
        socket_id, _, chat = ident.partition("|")
        kind, ident = ("chat socket", f"{socket_id} → {chat.replace('|', ' / ')}") if chat else ("socket", socket_id)
    return Member(kind=kind, ident=ident, expires_at=store.from_ms(int(expiry_ms)))


def live_members(uid: str) -> list[tuple[str, float]]:
    """The user's live presence members with their expiry (ms)."""
    return [(name.decode(), score) for name, score in get_redis().zrangebyscore(
        keys.presence_members_key(uid), int(time.time() * 1000), "+inf", withscores=True)]


def user_page(uid: str) -> UserPage:
    now = timezone.now()
    sessions = sorted(store.user_sessions(uid), key=lambda s: s.expires_at, reverse=True)
    members = live_members(uid)
    channel = user_channel(uid)
    return UserPage(
        uid=uid,
        sessions=[SessionRow(info, info.state(now)) for info in sessions],
        ended_sessions=list(SessionRecord.objects.filter(user_id=uid).order_by("-ended_at")[:ENDED_SESSIONS_SHOWN]),
        members=[_member(name, score) for name, score in members],
        listeners=user_listeners_view(uid=uid, members=[name for name, _ in members]),
        registrations=list_collection_registrations(user_id=uid, limit=_REGISTRATIONS_READ),
        channel=channel,
        events=selectors.channel_events(channel, limit=EVENTS_SHOWN),
        jobs=[job for job in recent_jobs(limit=JOBS_READ) if job.uid == uid],
    )


# --- prefix search ---------------------------------------------------------------------------------------------------
SEARCH_LIMIT = 50
_SCAN_COUNT = 500  # index entries per shard per round
_SCAN_ROUNDS = 4  # at most 256 shards x 4 rounds x 500 entries examined: bounded whatever the number of sessions


@dataclass(frozen=True)
class SearchResult:
    prefix: str
    uids: list[str]  # users whose uid starts with the prefix (with a session or a live member)
    sessions: list[tuple[str, str]]  # (uid, session id) whose session id starts with the prefix
    complete: bool  # False when the bound stopped the search before every index was read


def _glob(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def _scan(index_keys: list[str], match: str, limit: int) -> tuple[list[bytes], bool]:
    """ZSCAN these sorted sets (the per-shard indexes, never the keyspace) with ``match``: each round is one
    pipelined round trip over the indexes not finished yet; stops at ``limit`` hits or after ``_SCAN_ROUNDS``."""
    client = get_redis()
    cursors = {key: 0 for key in index_keys}
    found: list[bytes] = []
    for _ in range(_SCAN_ROUNDS):
        pipe = client.pipeline(transaction=False)
        for key, cursor in cursors.items():
            pipe.zscan(key, cursor, match=match, count=_SCAN_COUNT)
        for key, (cursor, entries) in zip(list(cursors), pipe.execute()):
            found.extend(member for member, _ in entries)
            if cursor:
                cursors[key] = cursor
            else:
                del cursors[key]
        if len(found) >= limit or not cursors:
            break
    return found, not cursors


def search(prefix: str, *, limit: int = SEARCH_LIMIT) -> SearchResult:
    """Users and sessions whose id starts with ``prefix``, from the session expiry indexes (``"<uid> <sid>"``) and
    the online-users indexes (users with only sockets). Bounded (see ``_scan``); never a keyspace SCAN."""
    pattern = _glob(prefix)
    shards = range(keys.USER_SHARDS)
    by_uid, uids_done = _scan([keys.session_expiry_key(s) for s in shards] + [keys.presence_online_key(s)
                                                                                 for s in shards],
                              f"{pattern}*", limit)
    by_sid, sids_done = _scan([keys.session_expiry_key(s) for s in shards], f"* {pattern}*", limit)
    uids = sorted({store.split_index_member(member)[0] for member in by_uid})[:limit]
    sessions = sorted({pair for pair in map(store.split_index_member, by_sid) if pair[1].startswith(prefix)})[:limit]
    return SearchResult(prefix=prefix, uids=uids, sessions=sessions, complete=uids_done and sids_done)
