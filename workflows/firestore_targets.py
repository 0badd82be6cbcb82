"""One Firestore query listener: a target on a shared ``Listen`` stream (firestore_streams.py).

``ListenTarget`` reuses the SDK's ``Watch`` for the snapshot logic (the document tree, the ADDED/MODIFIED/REMOVED
changes, resets, resume tokens) and reads only the responses its stream hands it, judged by its own ``target_id``
where the SDK's single-target ``Watch`` checks a constant one.
"""
from __future__ import annotations

import functools
import time
from typing import Any, Callable

import structlog
from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.cloud.firestore_v1 import DocumentSnapshot, _helpers
from google.cloud.firestore_v1.types import ListenRequest, TargetChange
from google.cloud.firestore_v1.watch import ChangeType, Watch

from .firestore_streams import EventLoopThread, ListenChannelPool, _ResetTarget

log = structlog.get_logger(__name__)
# Plain ints (see firestore_streams.py): the raw protobuf's change types are ints.
_NO_CHANGE, _CURRENT, _RESET = (int(TargetChange.TargetChangeType[name]) for name in ("NO_CHANGE", "CURRENT", "RESET"))


def _time(document: Any, field: str) -> DatetimeWithNanoseconds | None:
    """A raw Document's timestamp field as proto-plus gives it (None when absent)."""
    return DatetimeWithNanoseconds.from_timestamp_pb(getattr(document, field)) if document.HasField(field) else None


def _by_document_path(doc1: DocumentSnapshot, doc2: DocumentSnapshot) -> int:
    """``Query._comparator`` of a query without ``order_by``: ascending by document path. The SDK's builds two
    protobuf messages per comparison to find that out (5 % of the worker's attach profile: 6,000 comparisons)."""
    left, right = doc1.reference._path, doc2.reference._path
    return (left > right) - (left < right)


class _DecodedSnapshot(DocumentSnapshot):
    """A document snapshot over data decoded for it alone. The SDK's constructor deep-copies ``data`` so that a
    caller's dict cannot change it; a watch's data has no other holder (5,000 copies of nested dicts in a 1,000-user
    attach, 1.7 % of the worker's profile). ``to_dict()`` still hands out a copy."""

    def __init__(self, reference: Any, data: Any, exists: bool, read_time: Any, create_time: Any,
                 update_time: Any) -> None:
        super().__init__(reference, None, exists, read_time, create_time, update_time)
        self._data = data


class ListenTarget(Watch):
    """One query listener. ``callback(target, docs, changes, read_time)`` runs on the loop: keep it short."""

    @classmethod
    def open(cls, query: Any, callback: Callable[..., None], *, pool: ListenChannelPool,
             loop: EventLoopThread) -> "ListenTarget":
        target = cls.for_query(query, None, _DecodedSnapshot)  # builds the target; _init_stream is ours
        if not query._orders:
            target._comparator = _by_document_path
        target._snapshot_callback = functools.partial(target._deliver, callback)
        target._pool = pool
        target.database = target._firestore._database_string
        target.rpc_metadata = target._firestore._rpc_metadata
        target.target_id = 0  # given by its stream, on the loop
        target.stream = None  # the SharedListen carrying it now (on the loop)
        target.channel = None  # its connection, for the counts (the pool's lock)
        target.opening = False  # holds one of the pool's opening places until its first snapshot (on the loop)
        target.stopped = False
        target.last_message_at = time.monotonic()
        target.heartbeats_seen = False
        target._quiet_since_no_change = False
        target._error = None
        pool.add(target)
        return target

    def _init_stream(self) -> None:
        """The SDK would start its threads here; the pool puts the target on a shared stream instead."""

    def _deliver(self, callback: Callable[..., None], *snapshot: Any) -> None:
        self._pool.opened(self)
        callback(self, *snapshot)

    def add_request(self) -> ListenRequest:
        """Its ``add_target``, with its resume token once it has one (a reconnect resumes each target)."""
        self._targets["target_id"] = self.target_id
        return self._get_rpc_request()

    # --- what the user's listeners and the watchdog see (any thread) ----------------------------------------------
    @property
    def is_active(self) -> bool:
        return not self.stopped and self._error is None

    @property
    def failure(self) -> str | None:
        if self._error is not None:
            return self._error
        return "closed" if self.stopped else None

    def stalled(self, now: float, stall_s: float) -> bool:
        """Silent past ``stall_s`` although the server heart-beats it, or its stream (see SharedListen.stalled)."""
        stream = self.stream
        return (self.heartbeats_seen and now - self.last_message_at > stall_s) or (
            stream is not None and stream.stalled(now, stall_s))

    def close(self, reason: Any = None) -> None:
        if self.stopped:
            return
        self.stopped = True
        if reason is not None and self._error is None:
            self._error = "error"
            log.warning("firestore_stream_closed_by_sdk", reason=type(reason).__name__)
        self._pool.release(self)

    # --- on the loop ------------------------------------------------------------------------------------------------
    def fail(self) -> None:
        """Its stream failed for good: the watchdog replaces the listener."""
        self._error = "error"
        self._pool.opened(self)

    def removed_by_server(self, code: int, message: str) -> None:
        self._error = "error"
        self._pool.opened(self)
        log.warning("firestore_target_removed", code=code or 13)

    def on_snapshot(self, proto: Any) -> None:
        """The SDK's entry point (``Watch.on_snapshot``), for a response addressed to this target alone. Its shared
        stream calls ``apply`` and counts the heartbeats itself: there, another target's first snapshot also ends with
        a NO_CHANGE, which this target would take for a heartbeat."""
        if proto is None:
            return
        self.last_message_at = time.monotonic()
        pb = proto._pb
        change = pb.target_change
        if pb.WhichOneof("response_type") == "target_change" and change.target_change_type == _NO_CHANGE \
                and not change.target_ids:
            self.heartbeats_seen = self.heartbeats_seen or self._quiet_since_no_change
            self._quiet_since_no_change = True
        else:
            self._quiet_since_no_change = False
        self.apply(proto)

    def apply(self, proto: Any) -> None:
        """One response of its stream that concerns it (``Watch.on_snapshot`` with our own target id)."""
        if self.stopped or self._error is not None:
            return
        pb = proto._pb
        which = pb.WhichOneof("response_type")
        if which == "target_change":
            change = pb.target_change
            kind = change.target_change_type
            if kind == _CURRENT:
                self.current = True
            if kind == _NO_CHANGE or kind == _CURRENT:
                # A read_time is a consistent point for the targets the change names (all when it names none; the
                # stream only hands us the ones naming us): "The consistent read_time for the given target_ids"
                # (google/firestore/v1/firestore.proto, TargetChange). The SDK's one-target Watch waits for the
                # stream-wide NO_CHANGE; on a shared stream that one can wait for another target's catch-up, so
                # a target's own CURRENT + read_time is taken too (the stream-wide marker then finds nothing new).
                if change.HasField("read_time") and self.current:
                    if self.has_pushed and not self.change_map:
                        self.resume_token = change.resume_token  # nothing new: skip building an empty snapshot
                    else:
                        self.push(DatetimeWithNanoseconds.from_timestamp_pb(change.read_time), change.resume_token)
            elif kind == _RESET:
                self._reset_docs()
            # ADD: acknowledged; REMOVE: handled by the stream (it names the targets)
        elif which == "document_change":
            document_change = pb.document_change
            if self.target_id in document_change.target_ids:
                # From the raw protobuf, as the SDK's proto-plus wrapper would give them: 16 µs a job document
                # instead of 28 (the wrapper builds an object for every field value).
                document = document_change.document
                self.change_map[document.name] = self._document_snapshot_cls(
                    reference=self._firestore.document(self._strip_document_pfx(document.name)),
                    data=_helpers.decode_dict(document.fields, self._firestore), exists=True, read_time=None,
                    create_time=_time(document, "create_time"), update_time=_time(document, "update_time"),
                )
            elif self.target_id in document_change.removed_target_ids:
                self.change_map[document_change.document.name] = ChangeType.REMOVED
        elif which == "document_delete":
            self.change_map[pb.document_delete.document] = ChangeType.REMOVED
        elif which == "document_remove":
            self.change_map[pb.document_remove.document] = ChangeType.REMOVED
        elif which == "filter" and pb.filter.count != self._current_size():
            self._reset_docs()
            raise _ResetTarget
