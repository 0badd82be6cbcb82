"""What every kind of listener is (the ``Listener`` protocol) and what it may ask of its user (``ListenerHost``).

A listener owns one source's state for one user (the unread notifications, the direct-message mirror, the workflow
cache, a chat thread's mirror) and turns that source's changes into events. It does not own its stream: the host
(``UserListeners``) opens, replaces and closes streams for every kind alike, and queues each change in the user's
serial queue (actors.py), where it is applied only if it comes from the stream open now; so ``apply`` and
``sync_payload`` always run in that queue, one at a time, and never see a closed stream's late changes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import redis
from google.api_core.exceptions import GoogleAPICallError, RetryError

from firebase_data.listeners_registry import authorized_company_ids
from registry import selectors as registry_selectors

from ..actors import KeyedSerialExecutor
from ..companies import Companies, CompaniesReader
from ..config import ListenersConfig
from ..firestore_streams import EventLoopThread, ListenChannelPool
from ..firestore_targets import ListenTarget
from ..rtdb_streams import RtdbStreamPools

# Called by a stream with (stream, *change): a Firestore snapshot's (docs, changes), or a Realtime DB event's
# (event_type, path, data). The host's handler only queues the change (it runs on the loop).
ChangeHandler = Callable[..., None]
# What a sync publishes: (event type, payload), or None while the listener has nothing to sync yet.
Sync = tuple[str, dict[str, Any]] | None


@dataclass(frozen=True)
class ListenerContext:
    """What every user's listeners share inside one worker."""

    config: ListenersConfig
    executor: KeyedSerialExecutor
    loop: EventLoopThread
    channels: ListenChannelPool  # Firestore Listen connections
    rtdb: RtdbStreamPools  # Realtime DB streams, on ``loop``
    companies: CompaniesReader  # the users' companies for the filtered syncs, read in batches


class ListenerHost(Protocol):
    """The user's side of a listener (UserListeners): who the user is, publishing, and coalesced syncs."""

    uid: str
    ctx: ListenerContext

    def publish(self, event_type: str, payload: dict[str, Any], job_id: str | None = None) -> None: ...

    def request_sync(self, kind: str) -> None:
        """Have ``sync_payload`` of ``kind`` published once the current burst of changes is over (debounce.py)."""


class Listener(Protocol):
    """One source a user listens to. Classes in the kind table (listeners/__init__.py) are built as ``cls(host)``
    and say with ``enabled(config)`` whether a user gets one; chat listeners follow the user's open threads."""

    kind: str  # the key in UserListeners.streams and ListenerState.kinds; its metric label is metric_kind(kind)
    ready: bool  # the first snapshot has been applied (the user's readiness waits for the table's kinds)
    filtered_by_company: bool  # its syncs are filtered by the user's companies (read for it before each sync)

    def open(self, on_change: ChangeHandler) -> Any:
        """Open a new stream (a ListenTarget or an RtdbStream) that reports to ``on_change``; may raise what the
        SDKs raise when the backend is unreachable (UserListeners retries with a backoff)."""

    def apply(self, stream: Any, *change: Any) -> None:
        """One change from the current stream; a replacement stream starts with its full first snapshot."""

    def sync_payload(self, companies: Companies) -> Sync:
        """The sync to publish now; ``companies`` is the user's (read just before) when ``filtered_by_company``,
        else None."""


class UserKind(Protocol):
    """A class of the kind table (listeners/__init__.py): every attached user gets one listener of it, if enabled."""

    def __call__(self, host: ListenerHost) -> Listener: ...

    def enabled(self, config: ListenersConfig) -> bool: ...


def open_firestore(query: Any, on_change: ChangeHandler, ctx: ListenerContext) -> ListenTarget:
    """A Firestore query listener on the worker's loop and pooled connections; ``on_change(stream, docs, changes)``."""
    def on_snapshot(stream: ListenTarget, docs: list, changes: list, read_time: Any) -> None:  # on the loop
        on_change(stream, docs, changes)

    return ListenTarget.open(query, on_snapshot, pool=ctx.channels, loop=ctx.loop)


class CompaniesUnavailable(Exception):
    """Where the user's companies are kept could not be read: the sync is retried later, never sent unfiltered."""


def authorized_companies(uid: str) -> set[str] | None:
    """The companies the user may see (None: no filter): the union over the user's registrations, else the app's
    ``listeners_registry/{uid}`` document (firebase_data/listeners_registry.py), read again at each sync so a change
    there applies to the next one."""
    try:
        companies = registry_selectors.authorized_companies(uid) or authorized_company_ids(uid)
    except (redis.RedisError, OSError, GoogleAPICallError, RetryError) as exc:
        raise CompaniesUnavailable(type(exc).__name__) from exc
    return set(companies) if companies else None
