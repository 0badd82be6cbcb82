"""Reads of the listeners workers' state: counts for /healthz (Redis, per live worker) and rows for the admin (SQL)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.db.models import QuerySet

from core.integrations.redis import get_redis

from .listeners.jobs import WORKFLOW as WORKFLOW_KIND
from .models import ListenerState
from .ownership import WORKERS_KEY, owner, registered_workers, stats_key

_MAX_USERS_LISTED = 1000


def _worker_totals(*fields: str) -> tuple[int, dict[str, int]]:
    """How many workers are registered, and these stats fields summed over them (a dead worker's hash has expired,
    so it adds nothing): two round trips whatever the number of workers."""
    client = get_redis()
    worker_ids = sorted(client.smembers(WORKERS_KEY))
    totals = dict.fromkeys(fields, 0)
    if worker_ids:
        pipe = client.pipeline(transaction=False)
        for worker_id in worker_ids:
            pipe.hmget(stats_key(worker_id.decode()), *fields)
        for values in pipe.execute():
            for field, value in zip(fields, values):
                totals[field] += int(value or 0)
    return len(worker_ids), totals


def listener_counts() -> dict[str, int]:
    """Users with listeners, summed over the live workers."""
    _, totals = _worker_totals("users", "workflow_users")
    return {"listeners_count": totals["users"], "workflow_listeners_count": totals["workflow_users"]}


def workflow_listener_status(*, with_users: bool) -> dict[str, Any]:
    """The original service's ``/debug`` block: ``{status, enabled, active_count, cache_entries}`` over the live
    workers, plus the users with a jobs listener when ``with_users`` (LOCAL only: user ids stay out of production)."""
    workers, totals = _worker_totals("workflow_users", "workflow_cache_entries")
    enabled = settings.WORKFLOW_LISTENER_ENABLED
    status = "disabled" if not enabled else "ok" if workers else "no_worker"
    block: dict[str, Any] = {"status": status, "enabled": enabled, "active_count": totals["workflow_users"],
                             "cache_entries": totals["workflow_cache_entries"]}
    if with_users:
        try:
            rows = list(ListenerState.objects.values_list("uid", "kinds").order_by("uid")[:_MAX_USERS_LISTED])
        except DatabaseError:  # a diagnostic page: the block stays useful without the list (e.g. SQLite locked)
            return block
        block["users"] = [uid for uid, kinds in rows if WORKFLOW_KIND in (kinds or [])]
    return block


def list_listener_states(*, worker_id: str | None = None, uid: str | None = None) -> QuerySet[ListenerState]:
    """Current listener rows (worker, user, kinds, since, last event, restarts), ordered by worker then user."""
    states = ListenerState.objects.all()
    if worker_id is not None:
        states = states.filter(worker_id=worker_id)
    if uid is not None:
        states = states.filter(uid=uid)
    return states.order_by("worker_id", "uid")


# --- one user's listeners, and why they are attached (the console's user page) -------------------------------------
@dataclass(frozen=True)
class AttachReason:
    """Why the user's listeners are (or stay) attached: ``socket`` / ``chat socket`` / ``session`` (a live presence
    member, users.py attaches while any is live), ``grace`` (no live member: the owner detaches after
    LISTENERS_DETACH_GRACE_S), ``parked`` (staff detached: back on the next presence change), ``unowned`` (members
    but no worker holds the lease yet)."""

    reason: str
    detail: str


@dataclass(frozen=True)
class UserListenersView:
    owner: str | None  # the worker holding the user's lease
    owner_alive: bool
    rows: list[ListenerState]  # one per worker that reports the user (two for a moment during a takeover)
    reasons: list[AttachReason]


def _member_reason(member: str) -> AttachReason:
    kind, _, ident = member.partition(":")
    if kind == "session":
        return AttachReason("session", ident)
    socket_id, _, chat = ident.partition("|")
    if chat:
        return AttachReason("chat socket", f"{socket_id} → {chat.replace('|', ' / ')}")
    return AttachReason("socket", socket_id)


def user_listeners_view(*, uid: str, members: list[str]) -> UserListenersView:
    """The user's listeners and the reasons they are attached, derived from what the worker already records (its
    lease, its ListenerState rows) and the user's live presence ``members``: the attach path records no reason of
    its own. Two Redis round trips and one query."""
    worker_id = owner(uid)
    alive = bool(worker_id) and registered_workers().get(worker_id, False)
    rows = list(list_listener_states(uid=uid))
    if members:
        reasons = [_member_reason(member) for member in sorted(members)]
        if worker_id is None:
            reasons.append(AttachReason("unowned", "no worker holds the user's lease yet"))
        elif any(row.worker_id == worker_id and not row.kinds for row in rows):
            reasons.append(AttachReason("parked", "staff detached the listeners: back on the next presence change"))
    elif worker_id is not None or rows:
        grace = int(settings.LISTENERS_DETACH_GRACE_S)
        reasons = [AttachReason("grace", f"no live socket or session: the worker detaches {grace} s after the last "
                                         "one left")]
    else:
        reasons = []
    return UserListenersView(owner=worker_id, owner_alive=alive, rows=rows, reasons=reasons)


def listeners_restarted_since(*, uid: str, requested_at: dt.datetime) -> bool:
    """A staff restart is done once the owner's row shows listeners started after the request
    (user_listeners.restart_all moves ``since``; the worker writes its rows every ``state_flush_s``)."""
    return ListenerState.objects.filter(uid=uid, since__gte=requested_at).exists()
