"""One user's listeners and the events they publish.

Kinds: ``notifications`` (Firestore unread query → ``notif.sync``), ``messages`` (RTDB direct messages →
``msg.new`` + ``msg.sync``), ``workflow`` (Firestore task_manager → ``workflow.*``) and one ``chat:{space}/{mode}/
{thread}`` per thread the user's sockets opened (RTDB → ``chat.sync`` + ``chat.message``).

Every method runs in the user's serial queue (see actors.py), except the SDK callbacks, which only queue work,
and ``unhealthy()``, which the watchdog reads. State is rebuilt from each listener's own snapshot and changes;
nothing re-reads a collection. A replacement listener (watchdog, staff restart) starts from a full snapshot: it
re-syncs notifications and messages, and reports only what really changed while the old one was down.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import redis
import structlog
from django.utils import timezone
from firebase_admin import exceptions as fb_exceptions
from google.api_core import exceptions as gexc
from google.cloud.firestore_v1 import FieldFilter
from google.cloud.firestore_v1.query import Query

from core.integrations.firebase import get_firestore
from core.integrations.rtdb import reference
from core.metrics import LISTENER_RESTARTS, LISTENERS_ACTIVE
from realtime import presence
from realtime.events import (
    CHAT_MESSAGE, CHAT_SYNC, MSG_NEW, MSG_SYNC, NOTIF_SYNC, WORKFLOW_INVOICE_UPDATE, WORKFLOW_STEP_UPDATE,
)
from realtime.publisher import publish_event
from registry.selectors import authorized_companies as registry_companies

from . import events
from .actors import KeyedSerialExecutor
from .config import ListenersConfig
from .debounce import Debouncer
from .firestore_streams import EventLoopThread, ListenChannelPool, ListenStream
from .rtdb_streams import RtdbStream, apply_event, new_children
from .services import ListenerStateRecord

log = structlog.get_logger(__name__)

NOTIFICATIONS, MESSAGES, WORKFLOW, CHAT_PREFIX = "notifications", "messages", "workflow", "chat:"
_OPEN_ERRORS = (fb_exceptions.FirebaseError, gexc.GoogleAPIError, OSError, ValueError)
_RETRY_FIRST_S, _RETRY_MAX_S = 1.0, 30.0


@dataclass(frozen=True)
class ListenerContext:
    """What every user's listeners share inside one worker."""

    config: ListenersConfig
    executor: KeyedSerialExecutor
    loop: EventLoopThread
    channels: ListenChannelPool


@dataclass
class _Chat:
    space_code: str
    mode: str
    thread_key: str
    sockets: set[str] = field(default_factory=set)
    mirror: dict[str, Any] = field(default_factory=dict)
    ready: bool = False

    @property
    def path(self) -> str:
        return f"{self.space_code}/{self.mode}/{self.thread_key}/messages"


def chat_kind(space_code: str, mode: str, thread_key: str) -> str:
    return f"{CHAT_PREFIX}{space_code}/{mode}/{thread_key}"


def metric_kind(kind: str) -> str:
    return "chat" if kind.startswith(CHAT_PREFIX) else kind


class CompaniesUnavailable(Exception):
    """The registry (Redis) could not be read."""


def authorized_companies(uid: str) -> set[str] | None:
    """The registry's authorized companies of the user (None: no filter), read from Redis (no SQL per event).
    Raises CompaniesUnavailable when Redis is unreachable."""
    try:
        companies = registry_companies(uid)
    except (redis.RedisError, OSError):
        raise CompaniesUnavailable() from None
    return set(companies) if companies else None


def resolve_chat_mode(space_code: str, thread_key: str) -> str | None:
    """Where a thread lives when the socket did not say: ``chats`` or ``job_chats``; None while it exists nowhere."""
    for mode in ("chats", "job_chats"):
        if reference(f"{space_code}/{mode}/{thread_key}").get(shallow=True) is not None:
            return mode
    return None


def _socket_id(member: str) -> str:
    return member.split("|", 1)[0]


def _is_user_member(member: str) -> bool:
    """A member that receives the user channel: a plain socket or a registry session (not a chat socket)."""
    return member.startswith("session:") or (member.startswith("ws:") and "|" not in member)


class UserListeners:
    def __init__(self, uid: str, ctx: ListenerContext) -> None:
        self.uid = uid
        self.ctx = ctx
        self.attached = False
        self.since: dt.datetime = timezone.now()
        self.last_event_at: dt.datetime | None = None
        self.restarts = 0
        self.members: set[str] = set()
        self.wanted: set[str] = set()  # kinds that should be open (a failed open is retried by the watchdog)
        self.streams: dict[str, Any] = {}
        self.notifications: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, Any] = {}
        self.workflow = events.WorkflowCache(max_jobs=ctx.config.workflow_cache_jobs)
        self._notif_ready = self._messages_ready = self._workflow_seeded = False
        self._chats: dict[str, _Chat] = {}
        self._resolved_modes: dict[tuple[str, str], str] = {}
        self._syncs = Debouncer(ctx.config.sync_quiet_s, ctx.config.sync_max_delay_s)
        self._retry_at: dict[str, float] = {}
        self._retry_delay: dict[str, float] = {}
        self.state_version = 0  # bumped on every change the ListenerState row shows
        self.has_unresolved_chats = False  # a socket's thread exists nowhere yet: presence refreshes retry it

    # --- lifecycle --------------------------------------------------------------------------------------------------
    def attach(self, members: list[str]) -> None:
        if self.attached:
            return
        self.attached = True
        self.since = timezone.now()
        self.members = set(members)
        self.wanted = {NOTIFICATIONS, MESSAGES} | ({WORKFLOW} if self.ctx.config.workflow_enabled else set())
        # Firestore first: opening its streams does not block, and their first snapshots are the slowest to come;
        # the Realtime DB open (an HTTP request) then overlaps with them.
        for kind in sorted(self.wanted, key=lambda kind: (kind == MESSAGES, kind)):
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
        self.wanted.clear()
        self._chats.clear()
        self._resolved_modes.clear()
        self.notifications.clear()
        self.messages.clear()
        self.workflow = events.WorkflowCache(max_jobs=self.ctx.config.workflow_cache_jobs)
        self._notif_ready = self._messages_ready = self._workflow_seeded = False
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
        self._request_sync(NOTIFICATIONS)
        self._request_sync(MESSAGES)

    def restart(self, kind: str, reason: str, expected: Any) -> None:
        """Replace one listener (the watchdog found ``expected`` failed, stalled or missing)."""
        if not self.attached or kind not in self.wanted or self.streams.get(kind) is not expected:
            return
        if expected is None and time.monotonic() < self._retry_at.get(kind, 0.0):
            return
        if expected is not None:
            self._close(kind)
        LISTENER_RESTARTS.labels(metric_kind(kind), reason).inc()
        self.restarts += 1
        self.state_version += 1
        log.warning("listener_restarted", uid=self.uid, kind=metric_kind(kind), reason=reason)
        self._open(kind)

    def restart_all(self, reason: str) -> None:
        for kind in sorted(self.wanted):
            self.restart(kind, reason, self.streams.get(kind))

    # --- health (read by the watchdog thread) -------------------------------------------------------------------------
    def unhealthy(self, now: float) -> list[tuple[str, str, Any]]:
        found = []
        for kind in list(self.wanted):
            stream = self.streams.get(kind)
            if stream is None:
                if now >= self._retry_at.get(kind, 0.0):
                    found.append((kind, "error", None))
            elif stream.failure is not None:
                found.append((kind, stream.failure, stream))
            elif stream.stalled(now, self.ctx.config.stall_s):
                found.append((kind, "stall", stream))
        return found

    @property
    def ready(self) -> bool:
        """Every initial snapshot has arrived (what the two-worker test and the stats wait for)."""
        return self.attached and self._notif_ready and self._messages_ready and (
            self._workflow_seeded or WORKFLOW not in self.wanted
        )

    def record(self) -> ListenerStateRecord:
        return ListenerStateRecord(self.uid, sorted(self.streams), self.since, self.last_event_at, self.restarts)

    # --- streams ------------------------------------------------------------------------------------------------------
    def _submit(self, task: Callable[[], None]) -> None:
        self.ctx.executor.submit(self.uid, task)

    def _open(self, kind: str) -> None:
        try:
            stream = self._new_stream(kind)
        except _OPEN_ERRORS as exc:
            delay = self._retry_delay.get(kind, _RETRY_FIRST_S)
            self._retry_at[kind] = time.monotonic() + delay
            self._retry_delay[kind] = min(delay * 2, _RETRY_MAX_S)
            log.warning("listener_open_failed", uid=self.uid, kind=metric_kind(kind), error=type(exc).__name__,
                        retry_in_s=delay)
            return
        self._retry_delay.pop(kind, None)
        stream.seeded = False
        self.streams[kind] = stream
        LISTENERS_ACTIVE.labels(metric_kind(kind)).inc()
        self.state_version += 1

    def _new_stream(self, kind: str) -> Any:
        db = get_firestore()
        if kind == NOTIFICATIONS:
            query = db.collection(f"clients/{self.uid}/notifications").where(filter=FieldFilter("read", "==", False))
            return self._firestore_stream(query, self._apply_notifications)
        if kind == WORKFLOW:
            jobs = Query(db.collection(f"clients/{self.uid}/task_manager"))
            return self._firestore_stream(jobs, self._apply_workflow)
        if kind == MESSAGES:
            return RtdbStream(f"clients/{self.uid}/direct_message_notif", self._rtdb_handler(self._apply_messages))
        chat = self._chats[kind]
        return RtdbStream(chat.path, self._rtdb_handler(lambda *event: self._apply_chat(kind, *event)))

    def _firestore_stream(self, query: Any, apply: Callable[..., None]) -> ListenStream:
        def on_snapshot(stream: ListenStream, docs: list, changes: list, read_time: Any) -> None:  # loop: only queue
            self._submit(lambda: apply(stream, docs, changes))

        return ListenStream.open(query, on_snapshot, pool=self.ctx.channels, loop=self.ctx.loop)

    def _rtdb_handler(self, apply: Callable[..., None]) -> Callable[..., None]:
        def on_event(stream: RtdbStream, event_type: str, path: str, data: Any) -> None:  # SDK thread: only queue
            self._submit(lambda: apply(stream, event_type, path, data))

        return on_event

    def _close(self, kind: str) -> None:
        stream = self.streams.pop(kind, None)
        if stream is not None:
            stream.close()
            LISTENERS_ACTIVE.labels(metric_kind(kind)).dec()
            self.state_version += 1

    def _current(self, kind: str, stream: Any) -> bool:
        return self.attached and self.streams.get(kind) is stream

    # --- notifications ------------------------------------------------------------------------------------------------
    def _apply_notifications(self, stream: ListenStream, docs: list, changes: list) -> None:
        if not self._current(NOTIFICATIONS, stream):
            return
        if not stream.seeded:  # a (new) listener's first snapshot is the whole unread set
            stream.seeded = True
            self.notifications = {doc.id: events.notification_item(doc.to_dict() or {}, doc.id) for doc in docs}
        else:
            for change in changes:
                doc = change.document
                if change.type.name == "REMOVED":
                    self.notifications.pop(doc.id, None)
                else:
                    self.notifications[doc.id] = events.notification_item(doc.to_dict() or {}, doc.id)
        self._notif_ready = True
        self._request_sync(NOTIFICATIONS)

    # --- direct messages ----------------------------------------------------------------------------------------------
    def _apply_messages(self, stream: RtdbStream, event_type: str, path: str, data: Any) -> None:
        if not self._current(MESSAGES, stream):
            return
        known = set(self.messages) if self._messages_ready else None
        self.messages = apply_event(self.messages, event_type, path, data)
        self._messages_ready = True
        if known is not None:  # the first snapshot after attach only syncs: nothing in it is "new" to the user
            added = new_children(known, self.messages)
            if added:
                self._announce_new_messages(added)
        self._request_sync(MESSAGES)

    def _announce_new_messages(self, keys: list[str]) -> None:
        try:
            companies = authorized_companies(self.uid)
        except CompaniesUnavailable:
            # Without the user's companies nothing is announced; the sync that follows is retried until it can
            # be filtered, and it carries these messages.
            log.warning("authorized_companies_unavailable", uid=self.uid)
            return
        items = [events.message_item(self.messages[key], key) for key in keys]
        for item in events.visible(items, companies):
            self._publish(MSG_NEW, {"message": item})

    # --- workflow -----------------------------------------------------------------------------------------------------
    def _apply_workflow(self, stream: ListenStream, docs: list, changes: list) -> None:
        if not self._current(WORKFLOW, stream):
            return
        if not stream.seeded:
            stream.seeded = True
            states = {doc.id: events.job_state(doc.to_dict() or {}) for doc in docs}
            if not self._workflow_seeded:
                # First snapshot after attach: it seeds the cache and emits nothing (the original emitted both
                # events for every job at every login).
                for job_id, state in states.items():
                    self.workflow.put(job_id, state)
                self._workflow_seeded = True
                return
            # A replacement listener: report only what changed while the previous one was down.
            self.workflow.keep_only(set(states))
            for job_id, state in states.items():
                self._publish_job_changes(job_id, state)
            return
        for change in changes:
            job_id = change.document.id
            if change.type.name == "REMOVED":
                self.workflow.forget(job_id)
            else:
                self._publish_job_changes(job_id, events.job_state(change.document.to_dict() or {}))

    def _publish_job_changes(self, job_id: str, state: events.JobState) -> None:
        before = self.workflow.get(job_id)
        invoice = events.invoice_changes(before, state)
        steps = events.step_changes(before, state)
        if invoice:
            self._publish(WORKFLOW_INVOICE_UPDATE, {"invoice_changes": invoice}, job_id=job_id)
        if steps:
            self._publish(WORKFLOW_STEP_UPDATE, {"step_changes": {events.STEP_STATUS_FIELD: steps}}, job_id=job_id)
        self.workflow.put(job_id, state)

    # --- chats --------------------------------------------------------------------------------------------------------
    def _reconcile_chats(self) -> None:
        wanted: dict[str, _Chat] = {}
        self.has_unresolved_chats = False
        for member in self.members:
            for interest in presence.chat_interests([member]):
                mode = interest.mode or self._resolve(interest.space_code, interest.thread_key)
                if mode is None:
                    self.has_unresolved_chats = True  # the thread exists nowhere yet: the next refresh retries
                    continue
                kind = chat_kind(interest.space_code, mode, interest.thread_key)
                chat = wanted.setdefault(kind, _Chat(interest.space_code, mode, interest.thread_key))
                chat.sockets.add(_socket_id(member))
        for kind in [kind for kind in self._chats if kind not in wanted]:
            self.wanted.discard(kind)
            self._close(kind)
            del self._chats[kind]
        for kind, chat in wanted.items():
            existing = self._chats.get(kind)
            if existing is None:
                self._chats[kind] = chat
                self.wanted.add(kind)
                self._open(kind)
            elif chat.sockets - existing.sockets:
                existing.sockets = chat.sockets
                self._request_sync(kind)  # a new socket on an open thread gets the recent messages too
            else:
                existing.sockets = chat.sockets
        active = {(chat.space_code, chat.thread_key) for chat in self._chats.values()}
        self._resolved_modes = {key: mode for key, mode in self._resolved_modes.items() if key in active}

    def _resolve(self, space_code: str, thread_key: str) -> str | None:
        key = (space_code, thread_key)
        if key not in self._resolved_modes:
            try:
                mode = resolve_chat_mode(space_code, thread_key)
            except (fb_exceptions.FirebaseError, ValueError) as exc:
                log.warning("chat_mode_resolution_failed", uid=self.uid, error=type(exc).__name__)
                return None
            if mode is None:
                return None
            self._resolved_modes[key] = mode
        return self._resolved_modes[key]

    def _apply_chat(self, kind: str, stream: RtdbStream, event_type: str, path: str, data: Any) -> None:
        if not self._current(kind, stream):
            return
        chat = self._chats[kind]
        known = set(chat.mirror) if chat.ready else None
        chat.mirror = apply_event(chat.mirror, event_type, path, data)
        if known is None:
            chat.ready = True
            self._request_sync(kind)
            return
        for key in new_children(known, chat.mirror):
            message = chat.mirror[key]
            self._publish(CHAT_MESSAGE, {
                "space_code": chat.space_code, "thread_key": chat.thread_key, "raw_messages": [{"id": key, **message}],
            })
            if events.should_mark_read(message):
                self._mark_read(chat, key)

    def _mark_read(self, chat: _Chat, message_id: str) -> None:
        """What the original client did for agent messages it delivered (MESSAGE/CARD/TOOL/CMMD, unread)."""
        try:
            reference(f"{chat.path}/{message_id}").update({"read": True})
        except (fb_exceptions.FirebaseError, ValueError) as exc:
            log.warning("chat_mark_read_failed", uid=self.uid, error=type(exc).__name__)

    # --- syncs (coalesced) and publishing ------------------------------------------------------------------------
    def _request_sync(self, kind: str) -> None:
        """Publish a sync of ``kind`` once this burst of changes is over (see Debouncer)."""
        generation, delay = self._syncs.request(kind, time.monotonic())
        self.ctx.loop.call_later(delay, lambda: self._submit(lambda: self._flush_sync(kind, generation)))

    def _flush_sync(self, kind: str, generation: int) -> None:
        if not self._syncs.fire(kind, generation) or not self.attached:
            return
        if kind in (NOTIFICATIONS, MESSAGES):
            try:
                companies = authorized_companies(self.uid)
            except CompaniesUnavailable:
                log.warning("authorized_companies_unavailable", uid=self.uid)
                self._request_sync(kind)  # try again after another debounce period
                return
        if kind == NOTIFICATIONS and self._notif_ready:
            items = events.visible(self.notifications.values(), companies)
            self._publish(NOTIF_SYNC, events.sync_payload("notifications", items))
        elif kind == MESSAGES and self._messages_ready:
            messages = [events.message_item(value, key)
                        for key, value in self.messages.items() if isinstance(value, dict)]
            items = events.visible(messages, companies)
            self._publish(MSG_SYNC, events.sync_payload("messages", items))
        elif kind in self._chats and self._chats[kind].ready:
            chat = self._chats[kind]
            self._publish(CHAT_SYNC, {
                "space_code": chat.space_code, "thread_key": chat.thread_key,
                "messages": events.chat_messages(chat.mirror),
            })

    def _publish(self, event_type: str, payload: dict[str, Any], job_id: str | None = None) -> None:
        publish_event(self.uid, event_type, payload, job_id=job_id)
        self.last_event_at = timezone.now()
