"""Writes for the listeners: staff commands to the owning worker, and the worker's own ListenerState rows."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from .models import ListenerState
from .ownership import send_control


# --- staff actions (sent over Redis to the worker that owns the user) -------------------------------------------------
def request_listener_restart(*, uid: str) -> bool:
    """Replace every listener of the user and re-sync it. False when no live worker owns the user."""
    return send_control(uid, "restart")


def request_listener_detach(*, uid: str) -> bool:
    """Detach the user's listeners now; they come back on the user's next presence change (a socket or session
    opening or closing) or when another worker takes the user over. False when no live worker owns the user."""
    return send_control(uid, "detach")


def request_resync(*, uid: str) -> bool:
    """Publish a fresh ``notif.sync`` and ``msg.sync`` from the listeners' current state (no database read)."""
    return send_control(uid, "resync")


# --- the worker's state rows ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ListenerStateRecord:
    uid: str
    kinds: list[str]
    since: dt.datetime
    last_event_at: dt.datetime | None
    restarts: int


def save_listener_states(*, worker_id: str, records: list[ListenerStateRecord]) -> None:
    """Insert or update the rows of these users, in one statement per 500 rows."""
    if not records:
        return
    now = timezone.now()
    rows = [
        ListenerState(worker_id=worker_id, uid=record.uid, kinds=record.kinds, since=record.since,
                      last_event_at=record.last_event_at, restarts=record.restarts, updated_at=now)
        for record in records
    ]
    ListenerState.objects.bulk_create(
        rows, batch_size=500, update_conflicts=True, unique_fields=["worker_id", "uid"],
        update_fields=["kinds", "since", "last_event_at", "restarts", "updated_at"],
    )


@transaction.atomic
def delete_listener_states(*, worker_id: str, uids: list[str] | None = None) -> int:
    """Remove a worker's rows: those of ``uids``, or all of them (a worker that stopped or died)."""
    states = ListenerState.objects.filter(worker_id=worker_id)
    if uids is None:
        return states.delete()[0]
    deleted = 0
    for start in range(0, len(uids), 500):
        deleted += states.filter(uid__in=uids[start:start + 500]).delete()[0]
    return deleted
