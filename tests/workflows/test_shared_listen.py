"""The shared Listen stream (workflows/firestore_streams.py, firestore_targets.py) against the Firestore emulator:
many queries as targets of one stream, each with its own id, snapshots, resume token and failures."""
from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import Any, Iterator

import pytest
from google.cloud.firestore_v1.query import Query
from google.cloud.firestore_v1.types import Document, DocumentChange, ExistenceFilter, ListenResponse, TargetChange
from google.rpc.status_pb2 import Status

from tests.conftest import wait_until
from workflows.firestore_streams import EventLoopThread, ListenChannelPool
from workflows.firestore_targets import ListenTarget

from .conftest import db


@pytest.fixture
def loop() -> Iterator[EventLoopThread]:
    thread = EventLoopThread("shared-listen-test-loop")
    yield thread
    thread.stop()


@pytest.fixture
def pool(loop: EventLoopThread) -> Iterator[ListenChannelPool]:
    pool = ListenChannelPool(loop, max_streams=90, targets_per_stream=3)
    yield pool
    pool.close()


class Seen:
    """What one target delivered: each snapshot's document ids and (change type, id) pairs."""

    def __init__(self, pool: ListenChannelPool, loop: EventLoopThread, collection: str) -> None:
        self.collection = collection
        self.snapshots: list[tuple[list[str], list[tuple[str, str]]]] = []
        self._lock = threading.Lock()
        self.target = ListenTarget.open(Query(db().collection(collection)), self._on_snapshot, pool=pool, loop=loop)

    def _on_snapshot(self, target: ListenTarget, docs: list, changes: list, read_time: Any) -> None:
        with self._lock:
            self.snapshots.append(([doc.id for doc in docs], [(c.type.name, c.document.id) for c in changes]))

    def count(self) -> int:
        with self._lock:
            return len(self.snapshots)

    def last(self) -> tuple[list[str], list[tuple[str, str]]]:
        with self._lock:
            return self.snapshots[-1]

    def write(self, doc_id: str) -> None:
        db().document(f"{self.collection}/{doc_id}").set({"n": doc_id})


def listeners(pool: ListenChannelPool, loop: EventLoopThread, count: int) -> list[Seen]:
    prefix = uuid.uuid4().hex[:8]
    found = [Seen(pool, loop, f"shared-{prefix}-{number}") for number in range(count)]
    wait_until(lambda: all(seen.count() == 1 for seen in found))
    return found


def on_loop(loop: EventLoopThread, callback) -> None:
    done = threading.Event()

    def run() -> None:
        try:
            callback()
        finally:
            done.set()

    loop.call_soon(run)
    assert done.wait(10)


def test_targets_added_and_removed_while_others_flow_share_one_stream(pool, loop):
    first, second = listeners(pool, loop, 2)
    assert pool.listen_streams_per_channel() == [1] and pool.queries_per_channel() == [2]
    first.write("a")
    wait_until(lambda: first.count() == 2)
    assert first.last() == (["a"], [("ADDED", "a")])

    [third] = listeners(pool, loop, 1)  # joins the stream the others flow on
    second.target.close()
    wait_until(lambda: pool.queries_per_channel() == [2])
    third.write("c")
    first.write("b")
    wait_until(lambda: third.count() == 2 and first.count() == 3)
    assert third.last() == (["c"], [("ADDED", "c")])
    assert first.last() == (["a", "b"], [("ADDED", "b")])
    assert second.count() == 1  # closed: nothing after
    assert pool.listen_streams_per_channel() == [1]


def test_a_full_stream_opens_another_and_an_empty_one_goes_away(pool, loop):
    seen = listeners(pool, loop, 4)  # three targets per stream in this pool
    assert pool.listen_streams_per_channel() == [2] and pool.queries_per_channel() == [4]
    seen[3].write("x")
    wait_until(lambda: seen[3].count() == 2)
    for listener in seen:
        listener.target.close()
    wait_until(lambda: pool.listen_streams_per_channel() == [0])
    assert pool.queries_per_channel() == [0]


def test_a_reconnect_resumes_every_target_with_its_own_token(pool, loop):
    first, second = listeners(pool, loop, 2)
    first.write("before")
    wait_until(lambda: first.count() == 2)
    stream = first.target.stream
    assert stream is second.target.stream and first.target.resume_token and second.target.resume_token

    on_loop(loop, stream.reconnect)
    wait_until(lambda: stream.calls == 2, timeout=30)  # a call that hangs opening is given up after 10 s
    first.write("after-1")
    wait_until(lambda: first.count() == 3, timeout=30)
    assert first.last() == (["after-1", "before"], [("ADDED", "after-1")])
    second.write("after")
    wait_until(lambda: second.count() == 2)
    assert second.last() == (["after"], [("ADDED", "after")])
    assert first.count() == 3  # resumed, not replayed: no second snapshot of what it had
    assert first.target.failure is None and second.target.failure is None


def test_a_target_whose_count_disagrees_is_reset_alone_and_flows_again(pool, loop):
    first, second = listeners(pool, loop, 2)
    first.write("a")
    wait_until(lambda: first.count() == 2)
    old_id = first.target.target_id
    mismatch = ListenResponse(filter=ExistenceFilter(target_id=old_id, count=99))
    on_loop(loop, lambda: first.target.stream._dispatch(mismatch))

    wait_until(lambda: first.target.target_id != old_id and first.target.current)
    first.write("b")
    second.write("c")
    wait_until(lambda: first.count() >= 3 and second.count() == 2)
    assert first.last()[0] == ["a", "b"] and ("ADDED", "b") in first.last()[1]
    assert second.last() == (["c"], [("ADDED", "c")])
    assert first.target.failure is None


def test_a_target_the_server_removes_fails_alone(pool, loop):
    first, second = listeners(pool, loop, 2)
    removed = ListenResponse(target_change=TargetChange(
        target_change_type=TargetChange.TargetChangeType.REMOVE, target_ids=[first.target.target_id],
        cause=Status(code=7, message="denied")))
    on_loop(loop, lambda: first.target.stream._dispatch(removed))
    assert first.target.failure == "error"
    second.write("still")
    wait_until(lambda: second.count() == 2)
    first.target.close()  # what the watchdog does before replacing it
    assert pool.queries_per_channel() == [1]


def marker(resume_token: bytes) -> ListenResponse:
    """A stream-wide consistency marker: a NO_CHANGE naming no target, with a read time."""
    return ListenResponse(target_change=TargetChange(
        target_change_type=TargetChange.TargetChangeType.NO_CHANGE, resume_token=resume_token,
        read_time=dt.datetime.now(dt.timezone.utc)))


def test_a_stream_wide_marker_gives_targets_with_nothing_new_its_token_and_the_others_their_snapshot(pool, loop):
    first, second = listeners(pool, loop, 2)
    stream = first.target.stream
    on_loop(loop, lambda: stream._dispatch(marker(b"quiet")))
    assert first.target.resume_token == second.target.resume_token == b"quiet"
    assert first.count() == second.count() == 1  # nothing new: no empty snapshot

    now = dt.datetime.now(dt.timezone.utc)
    document = Document(name=f"{db()._database_string}/documents/{first.collection}/x", create_time=now,
                        update_time=now, fields={"n": {"string_value": "x"}})
    changed = ListenResponse(document_change=DocumentChange(document=document, target_ids=[first.target.target_id]))
    on_loop(loop, lambda: stream._dispatch(changed))
    on_loop(loop, lambda: stream._dispatch(marker(b"after-x")))
    assert first.count() == 2 and first.last() == (["x"], [("ADDED", "x")])
    assert first.target.resume_token == second.target.resume_token == b"after-x"
    assert second.count() == 1
    assert first.target.doc_map[document.name].update_time == now
