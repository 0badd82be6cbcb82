"""One user's listeners: their streams (opened, replaced by the watchdog or staff, closed), syncs and events.

The kinds and what they publish are in workflows/listeners/ (one module per kind, README "Listeners worker"):
``notifications``, ``messages``, ``workflow`` (the table ``USER_KINDS``) and one ``chat:{space}/{mode}/{thread}``
per thread the user's sockets opened. This class treats them all alike.

Every method runs in the user's serial queue (see actors.py), except the stream callbacks (on the loop), which only queue work,
and ``unhealthy()``, which the watchdog reads. State is rebuilt from each listener's own snapshot and changes;
nothing re-reads a collection. A replacement listener (watchdog, staff restart) starts from a full snapshot: it
re-syncs notifications and messages, and reports only what really changed while the old one was down.
"""
from __future__ import annotations

import datetime as dt
import time
from typing import Any, Callable

import structlog
from django.utils import timezone
from firebase_admin import exceptions as fb_exceptions
from google.api_core import exceptions as gexc

from core import activity, provenance
from core.logging import new_trace_id, trace_id_var
from core.metrics import LISTENER_RESTARTS, LISTENERS_ACTIVE
from realtime.publisher import publish_event

from .debounce import Debouncer
from .listeners import USER_KINDS, metric_kind
from .companies import Companies
from .listeners.base import Listener, ListenerContext
from .listeners.jobs import WORKFLOW
from .listeners.chat import ChatListener, ChatThreads
from .listeners.messages import MESSAGES
from .listeners.notifications import NOTIFICATIONS
from .services import ListenerStateRecord

log = structlog.get_logger(__name__)

# The listener kind behind an event type, for the event's provenance record (the console's trace page).
_KIND_OF_PREFIX = {"notif": NOTIFICATIONS, "msg": MESSAGES, "workflow": WORKFLOW, "chat": "chat"}
_OPEN_ERRORS = (fb_exceptions.FirebaseError, gexc.GoogleAPIError, OSError, ValueError)
_RETRY_FIRST_S, _RETRY_MAX_S = 1.0, 30.0


def _is_user_member(member: str) -> bool:
    """A member that receives the user channel: a plain socket or a registry session (not a chat socket)."""
    return member.startswith("session:") or (member.startswith("ws:") and "|" not in member)


class OpenBackoff:
    """When a kind whose open failed is tried again: after 1 s, doubling up to 30 s, until an open succeeds."""

    def __init__(self) -> None:
        self._at: dict[str, float] = {}
        self._delay: dict[str, float] = {}

    def failed(self, kind: str, now: float) -> float:
        """Schedule the next try; returns its delay."""
        delay = self._delay.get(kind, _RETRY_FIRST_S)
        self._at[kind] = now + delay
        self._delay[kind] = min(delay * 2, _RETRY_MAX_S)
        return delay

    def succeeded(self, kind: str) -> None:
        self._delay.pop(kind, None)

    def due(self, kind: str, now: float) -> bool:
        return now >= self._at.get(kind, 0.0)


class UserListeners:
    """The listeners of one user on this worker (the worker's ``users``), and the ``ListenerHost`` they publish
    through (listeners/base.py)."""

    def __init__(self, uid: str, ctx: ListenerContext) -> None:
        self.uid = uid
        self.ctx = ctx
        self.attached = False
        self.since: dt.datetime = timezone.now()
        self.last_event_at: dt.datetime | None = None
        self.restarts = 0
        self.members: set[str] = set()
        self.listeners: dict[str, Listener] = {}  # kinds that should be open (a failed open is retried)
        self.streams: dict[str, Any] = {}  # kinds open now
        self._chat_threads = ChatThreads(uid)
        self._syncs = Debouncer(ctx.config.sync_quiet_s, ctx.config.sync_max_delay_s)
        self._backoff = OpenBackoff()
        self.state_version = 0  # bumped on every change the ListenerState row shows
        self._ready_listeners: dict[str, Listener] | None = None  # the listeners found all ready (see ``ready``)

    # --- lifecycle --------------------------------------------------------------------------------------------------
    def attach(self, members: list[str]) -> None:
        if self.attached:
            return
        # Before ``attached``: a user is never ready (stats, other threads) without its new listeners.
        self.listeners = {kind: cls(self) for kind, cls in USER_KINDS.items() if cls.enabled(self.ctx.config)}
        self.attached = True
        self.since = timezone.now()
        self.members = set(members)
        for kind in list(self.listeners):  # the table's order (see USER_KINDS)
            self._open(kind)
        self._reconcile_chats()
        self.state_version += 1
        log.info("listeners_attached", uid=self.uid, kinds=sorted(self.streams))

    def detach(self, reason: str) -> None:
        """Close everything and forget the state (the workflow cache included)."""
        if not self.attached:
            return
        for kind in list(self.streams):
            self._close(kind)
        self.attached = False
        self.listeners = {}
        self._chat_threads.clear()
        self._syncs.clear()
        self.state_version += 1
        log.info("listeners_detached", uid=self.uid, reason=reason)

    def refresh_members(self, members: list[str]) -> None:
        """Presence changed: new sockets/sessions get a sync, chat watchers follow the open threads."""
        current = set(members)
        joined = current - self.members
        self.members = current
        if not self.attached:
            return
        if any(_is_user_member(member) for member in joined):
            self.resync()
        self._reconcile_chats()

    def resync(self) -> None:
        self.request_sync(NOTIFICATIONS)
        self.request_sync(MESSAGES)

    def restart(self, kind: str, reason: str, expected: Any, *, counted: bool = True) -> bool:
        """Replace one listener (the watchdog found ``expected`` failed, stalled or missing); True when replaced."""
        if not self.attached or kind not in self.listeners or self.streams.get(kind) is not expected:
            return False
        if expected is None and not self._backoff.due(kind, time.monotonic()):
            return False
        if expected is not None:
            self._close(kind)
        LISTENER_RESTARTS.labels(metric_kind(kind), reason).inc()
        if counted:
            self.restarts += 1
            activity.record_listener_restart()
        self.state_version += 1
        log.warning("listener_restarted", uid=self.uid, kind=metric_kind(kind), reason=reason)
        self._log_kind_error(kind, reason)
        self._open(kind)
        return True

    def restart_all(self, reason: str) -> None:
        """A staff Restart is one restart of the user's listeners, whatever their number of kinds (the admin showed
        +3 for one click), and the listeners are new from now on, so ``since`` moves too."""
        replaced = [self.restart(kind, reason, self.streams.get(kind), counted=False)
                    for kind in sorted(self.listeners)]
        if any(replaced):
            self.restarts += 1
            self.since = timezone.now()
            self.state_version += 1
            activity.record_listener_restart()

    # --- health (read by the watchdog thread) -------------------------------------------------------------------------
    def unhealthy(self, now: float) -> list[tuple[str, str, Any]]:
        found = []
        for kind in list(self.listeners):
            stream = self.streams.get(kind)
            if stream is None:
                if self._backoff.due(kind, now):
                    found.append((kind, "error", None))
            elif stream.failure is not None:
                found.append((kind, stream.failure, stream))
            elif stream.stalled(now, self.ctx.config.stall_s):
                found.append((kind, "stall", stream))
        return found

    @property
    def ready(self) -> bool:
        """Every initial snapshot of the table's kinds has arrived (what the two-worker test and the stats wait for)."""
        listeners = self.listeners  # one dict: attach() and detach() replace it whole
        if listeners is self._ready_listeners:
            return self.attached
        ready = self.attached and all(listeners[kind].ready for kind in USER_KINDS if kind in listeners)
        if ready:
            # A listener never becomes unready, and attach() brings new ones in a new dict: the counts (ten times a
            # second while users attach) need not look at a ready user's listeners again.
            self._ready_listeners = listeners
        return ready

    @property
    def has_unresolved_chats(self) -> bool:
        """A socket's thread exists nowhere yet: presence refreshes retry it."""
        return self._chat_threads.unresolved

    def record(self) -> ListenerStateRecord:
        return ListenerStateRecord(self.uid, sorted(self.streams), self.since, self.last_event_at, self.restarts)

    # --- streams ------------------------------------------------------------------------------------------------------
    def _submit(self, task: Callable[[], None]) -> None:
        self.ctx.executor.submit(self.uid, task)

    def _open(self, kind: str) -> None:
        def on_change(stream: Any, *change: Any) -> None:  # on the loop: only queue
            self._submit(lambda: self._apply(kind, stream, change))

        try:
            stream = self.listeners[kind].open(on_change)
        except _OPEN_ERRORS as exc:
            delay = self._backoff.failed(kind, time.monotonic())
            log.warning("listener_open_failed", uid=self.uid, kind=metric_kind(kind), error=type(exc).__name__,
                        retry_in_s=delay)
            self._log_kind_error(kind, type(exc).__name__)
            return
        self._backoff.succeeded(kind)
        stream.seeded = False
        self.streams[kind] = stream
        LISTENERS_ACTIVE.labels(metric_kind(kind)).inc()
        self.state_version += 1

    def _log_kind_error(self, kind: str, reason: str) -> None:
        """A kind may name its own error event (``error_event``), as the original's workflow listener did."""
        event = getattr(self.listeners.get(kind), "error_event", None)
        if event:
            log.warning(event, uid=self.uid, reason=reason)

    def _apply(self, kind: str, stream: Any, change: tuple[Any, ...]) -> None:
        if self.attached and self.streams.get(kind) is stream:  # not from a stream closed meanwhile
            self.listeners[kind].apply(stream, *change)

    def _close(self, kind: str) -> None:
        stream = self.streams.pop(kind, None)
        if stream is not None:
            stream.close()
            LISTENERS_ACTIVE.labels(metric_kind(kind)).dec()
            self.state_version += 1

    # --- chats --------------------------------------------------------------------------------------------------------
    @property
    def _chats(self) -> dict[str, ChatListener]:
        return {kind: listener for kind, listener in self.listeners.items() if isinstance(listener, ChatListener)}

    def _reconcile_chats(self) -> None:
        """Watch exactly the threads the user's sockets have open (listeners/chat.py)."""
        wanted = self._chat_threads.wanted(self.members)
        chats = self._chats
        for kind in [kind for kind in chats if kind not in wanted]:
            del self.listeners[kind]
            self._close(kind)
        for kind, (thread, sockets) in wanted.items():
            chat = chats.get(kind)
            if chat is None:
                self.listeners[kind] = ChatListener(self, thread, sockets)
                self._open(kind)
            elif chat.follow(sockets):
                self.request_sync(kind)  # a new socket on an open thread gets the recent messages too

    # --- syncs (coalesced) and publishing ------------------------------------------------------------------------
    def request_sync(self, kind: str) -> None:
        """Publish a sync of ``kind`` once this burst of changes is over (see Debouncer)."""
        generation, delay = self._syncs.request(kind, time.monotonic())
        self.ctx.loop.call_later(delay, lambda: self._submit(lambda: self._flush_sync(kind, generation)))

    def _flush_sync(self, kind: str, generation: int) -> None:
        if not self._syncs.fire(kind, generation) or not self.attached or kind not in self.listeners:
            return
        listener = self.listeners[kind]
        if not listener.filtered_by_company:
            self._publish_sync(listener, None, True)
            return
        # The companies are read in a batch with other users' (companies.py); the sync goes out in our queue.
        self.ctx.companies.request(self.uid, lambda companies, available: self._submit(
            lambda: self._publish_sync(listener, companies, available)))

    def _publish_sync(self, listener: Listener, companies: Companies, available: bool) -> None:
        if not self.attached or self.listeners.get(listener.kind) is not listener:
            return  # detached, or the kind was replaced (a chat thread closed) meanwhile
        if not available:
            log.warning("authorized_companies_unavailable", uid=self.uid)
            self.request_sync(listener.kind)  # try again after another debounce period; never sent unfiltered
            return
        sync = listener.sync_payload(companies)
        if sync is not None:
            self.publish(*sync)

    def publish(self, event_type: str, payload: dict[str, Any], job_id: str | None = None) -> None:
        # Each event a listener publishes is its own trace: its trace_id leads staff to this worker and kind.
        trace_id = new_trace_id()
        token = trace_id_var.set(trace_id)
        try:
            result = publish_event(self.uid, event_type, payload, job_id=job_id)
        finally:
            trace_id_var.reset(token)
        provenance.record(trace_id, origin="listener", events=[(result.channel, result.seq)],
                          worker=self.ctx.config.worker_id, uid=self.uid, type=event_type,
                          kind=_KIND_OF_PREFIX.get(event_type.partition(".")[0], event_type.partition(".")[0]))
        self.last_event_at = timezone.now()
