"""The RTDB stand-in, exercised through the real ``firebase_admin.db`` SDK (plus a few raw HTTP
checks for error shapes the SDK cannot produce)."""
from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import firebase_admin
import pytest
from firebase_admin import credentials, db, exceptions
from google.auth.credentials import AnonymousCredentials

from devstack import rtdb_tree
from devstack.rtdb_server import RtdbStandin

pytestmark = [
    pytest.mark.timeout(120),
    # ListenerRegistration.close() makes the SDK's listener thread die with an AttributeError
    # once the next keep-alive arrives (an SDK quirk, see rtdb-protocol.md §5); that is noise here.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
]

ENV_VAR = "FIREBASE_DATABASE_EMULATOR_HOST"
REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT = 20.0  # generous: these are deadlines for things that normally take milliseconds


class EmulatorCred(credentials.Base):
    def get_credential(self) -> AnonymousCredentials:
        return AnonymousCredentials()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def next_event(events: "queue.Queue[db.Event]") -> tuple[str, str, Any]:
    try:
        event = events.get(timeout=WAIT)
    except queue.Empty:
        pytest.fail("no listener event arrived")
    return event.event_type, event.path, event.data


def make_app(server: RtdbStandin, name: str) -> firebase_admin.App:
    """A named app in emulator mode. The SDK reads the env var once, when the app first creates
    a reference, so it is set only around that moment and other tests' settings survive."""
    app = firebase_admin.initialize_app(
        EmulatorCred(), {"databaseURL": "https://demo-test.firebaseio.com", "projectId": "demo-test"}, name=name)
    previous = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = server.url.removeprefix("http://")
    try:
        db.reference("/", app)
    finally:
        if previous is None:
            del os.environ[ENV_VAR]
        else:
            os.environ[ENV_VAR] = previous
    return app


@pytest.fixture(scope="module")
def standin() -> Iterator[RtdbStandin]:
    # A short keep-alive makes ListenerRegistration.close() return quickly.
    server = RtdbStandin(keepalive_interval=0.25).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def app(standin: RtdbStandin) -> Iterator[firebase_admin.App]:
    app = make_app(standin, "rtdb-standin-tests")
    yield app
    firebase_admin.delete_app(app)


@pytest.fixture(scope="module")
def other_client(standin: RtdbStandin) -> Iterator[firebase_admin.App]:
    """A second app: its own HTTP session, like another process writing."""
    app = make_app(standin, "rtdb-standin-tests-writer")
    yield app
    firebase_admin.delete_app(app)


@pytest.fixture
def root(app: firebase_admin.App, standin: RtdbStandin) -> db.Reference:
    standin.reset()
    return db.reference("/", app)


@pytest.fixture
def listen() -> Iterator[Callable[[db.Reference], "queue.Queue[db.Event]"]]:
    """Starts listeners whose events land in a queue; closes them after the test."""
    registrations: list[db.ListenerRegistration] = []

    def start(ref: db.Reference) -> "queue.Queue[db.Event]":
        events: queue.Queue[db.Event] = queue.Queue()
        registrations.append(ref.listen(events.put))
        return events
    yield start
    for registration in registrations:
        registration.close()


# --- basic reads and writes -----------------------------------------------------------------

def test_get_and_set_round_trip_values(root: db.Reference) -> None:
    assert root.child("missing/deep").get() is None
    for value in ["text", "é ünïcode", 42, -1.5, True, False, {"a": {"b": 1}}, [30, 10, 20]]:
        root.child("v").set(value)
        assert root.child("v").get() == value
    root.child("with space/ünï").set("ok")
    assert root.child("with space").get() == {"ünï": "ok"}
    # nulls and empty objects are never stored, and a sparse index object stays an object
    root.child("pruned").set({"gone": None, "empty": {}, "kept": 1})
    assert root.child("pruned").get() == {"kept": 1}
    root.child("sparse").set({"0": "a", "5": "b"})
    assert root.child("sparse").get() == {"0": "a", "5": "b"}
    assert root.get() == {"v": [30, 10, 20], "with space": {"ünï": "ok"}, "pruned": {"kept": 1},
                          "sparse": {"0": "a", "5": "b"}}


def test_update_is_multi_path_and_null_deletes(root: db.Reference) -> None:
    room = root.child("room")
    room.set({"title": "hi", "meta": {"by": "a", "n": 1}, "old": True})
    room.update({"title": "t2", "meta/by": "b", "old": None})
    assert room.get() == {"title": "t2", "meta": {"by": "b", "n": 1}}


def test_delete_removes_node_and_empty_parents(root: db.Reference) -> None:
    root.child("a/b/c").set(1)
    root.child("a/b/c").delete()
    assert root.get() is None
    root.child("never/written").delete()  # deleting nothing is fine
    assert root.child("never").get() is None


def test_push_ids_are_ordered_by_creation(root: db.Reference) -> None:
    msgs = root.child("msgs")
    refs = [msgs.push({"i": i}) for i in range(100)]
    keys = [ref.key for ref in refs]
    assert all(len(key) == 20 for key in keys)
    assert keys == sorted(keys) and len(set(keys)) == 100
    assert [value["i"] for value in msgs.order_by_key().get().values()] == list(range(100))
    assert msgs.push().get() == ""  # the SDK's default value


def test_push_ids_increase_within_one_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rtdb_tree.time, "time", lambda: 1_700_000_000.0)
    ids = rtdb_tree.PushIds()
    keys = [ids.next() for _ in range(1000)]
    assert len({key[:8] for key in keys}) == 1
    assert keys == sorted(keys) and len(set(keys)) == 1000


def test_shallow_get(root: db.Reference) -> None:
    root.child("s").set({"a": {"deep": 1}, "b": 2})
    assert root.child("s").get(shallow=True) == {"a": True, "b": True}
    assert root.child("s/b").get(shallow=True) == 2
    assert root.child("nothing").get(shallow=True) is None


# --- queries --------------------------------------------------------------------------------

@pytest.fixture
def people(root: db.Reference) -> db.Reference:
    ref = root.child("people")
    ref.set({
        "ann": {"age": 30, "s": {"score": 5}},
        "bob": {"age": 20, "s": {"score": 9}},
        "cat": {"name": "no age"},
        "dan": {"age": "old", "s": {"score": 1}},
        "eve": {"age": True},
        "fay": {"age": False},
        "gus": {"age": {"nested": 1}},
        "hal": {"age": 20},
    })
    return ref


def test_order_by_child_uses_firebase_type_order(people: db.Reference) -> None:
    # missing < false < true < numbers < strings < objects; ties broken by key
    assert list(people.order_by_child("age").get()) == ["cat", "fay", "eve", "bob", "hal", "ann", "dan", "gus"]
    # the server picks the window in that same order, before the SDK re-sorts it
    assert list(people.order_by_child("age").limit_to_first(3).get()) == ["cat", "fay", "eve"]
    assert list(people.order_by_child("age").limit_to_last(2).get()) == ["dan", "gus"]
    assert list(people.order_by_child("s/score").start_at(2).get()) == ["ann", "bob"]


def test_range_and_equality_filters(people: db.Reference) -> None:
    by_age = people.order_by_child
    assert list(by_age("age").start_at(20).end_at(30).get()) == ["bob", "hal", "ann"]
    assert list(by_age("age").equal_to(20).get()) == ["bob", "hal"]
    assert list(by_age("age").equal_to(True).get()) == ["eve"]
    assert list(by_age("age").equal_to("old").get()) == ["dan"]
    assert list(by_age("age").end_at(False).get()) == ["cat", "fay"]  # a missing field sorts first
    assert list(by_age("age").start_at(25).limit_to_first(2).get()) == ["ann", "dan"]
    assert list(by_age("age").start_at(0).end_at(100).limit_to_last(2).get()) == ["hal", "ann"]
    assert by_age("age").equal_to(99).get() is None
    assert by_age("age").limit_to_first(0).get() is None


def test_order_by_key_puts_integer_keys_first(root: db.Reference) -> None:
    ref = root.child("keys")
    ref.set({"b": 1, "a": 1, "10": 1, "2": 1, "-1": 1, "007": 1})
    # server order: -1, 2, 10 (32-bit integers, numerically), then "007", "a", "b" as strings
    assert set(ref.order_by_key().limit_to_first(3).get()) == {"-1", "2", "10"}
    assert set(ref.order_by_key().limit_to_last(2).get()) == {"a", "b"}
    assert list(ref.order_by_key().start_at("a").get()) == ["a", "b"]
    assert list(ref.order_by_key().end_at("2").get()) == ["-1", "2"]
    assert list(ref.order_by_key().equal_to("b").get()) == ["b"]


def test_order_by_value_and_array_results(root: db.Reference) -> None:
    scores = root.child("scores")
    scores.set({"a": 3, "b": "x", "c": True, "d": 1, "e": {"o": 1}, "f": False})
    assert list(scores.order_by_value().get()) == ["f", "c", "d", "a", "b", "e"]
    assert list(scores.order_by_value().start_at(2).get()) == ["a", "b", "e"]
    assert list(scores.order_by_value().equal_to(True).get()) == ["c"]
    listed = root.child("listed")
    listed.set([30, 10, 20])
    assert listed.order_by_value().get() == [10, 20, 30]
    # {"1": 10, "2": 20} comes back as an array, as from the real server
    assert listed.order_by_value().limit_to_first(2).get() == [None, 10, 20]


def test_query_values_with_special_characters(root: db.Reference) -> None:
    names = root.child("names")
    names.set({"a": "plus+sign", "b": "é", "c": "with space"})
    assert list(names.order_by_value().equal_to("plus+sign").get()) == ["a"]
    assert list(names.order_by_value().equal_to("é").get()) == ["b"]
    assert list(names.order_by_value().equal_to("with space").get()) == ["c"]
    # the SDK does not URL-encode query values: "&" and "#" mangle the URL, and the server says so
    with pytest.raises(exceptions.InvalidArgumentError):
        names.order_by_value().equal_to("a&b").get()
    with pytest.raises(exceptions.InvalidArgumentError, match="namespace"):
        names.order_by_value().equal_to("a#b").get()


# --- ETags and transactions -------------------------------------------------------------------

def test_etags_and_conditional_writes(root: db.Reference) -> None:
    ref = root.child("n")
    missing_value, missing_tag = ref.get(etag=True)
    assert missing_value is None and isinstance(missing_tag, str)
    ok, value, tag = ref.set_if_unchanged(missing_tag, 1)
    assert (ok, value) == (True, 1) and tag != missing_tag
    assert ref.get(etag=True) == (1, tag)
    assert ref.get_if_changed(tag) == (False, None, None)
    ok, value, current_tag = ref.set_if_unchanged("stale", 2)
    assert (ok, value, current_tag) == (False, 1, tag)
    ref.set(3)
    assert ref.get_if_changed(tag) == (True, 3, ref.get(etag=True)[1])


def test_transaction_under_contention_loses_no_update(root: db.Reference) -> None:
    counter = root.child("counter")
    calls = 0
    calls_lock = threading.Lock()

    def increment(value: Optional[int]) -> int:
        nonlocal calls
        with calls_lock:
            calls += 1
        return (value or 0) + 1

    def worker() -> int:
        aborted = 0
        committed = 0
        while committed < 10:
            try:
                counter.transaction(increment)
                committed += 1
            except db.TransactionAbortedError:
                aborted += 1  # 25 lost races in a row; nothing was written, so retry
        return aborted

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        aborts = list(pool.map(lambda _: worker(), range(10)))
    assert counter.get() == 100
    assert calls > 100, "the threads never actually contended"
    print(f"transaction function calls: {calls}, aborted transactions: {sum(aborts)}")


def test_transaction_result_and_errors(root: db.Reference) -> None:
    ref = root.child("tx")
    assert ref.transaction(lambda value: {"n": 1} if value is None else value) == {"n": 1}
    with pytest.raises(ValueError):
        ref.transaction(lambda value: None)  # a transaction cannot delete
    assert ref.get() == {"n": 1}


# --- listeners ------------------------------------------------------------------------------

def test_listener_sees_changes_made_by_another_client(
        root: db.Reference, other_client: firebase_admin.App, listen: Callable) -> None:
    writer = db.reference("/", other_client)
    writer.child("room").set({"title": "hi"})
    events = listen(root.child("room"))
    assert next_event(events) == ("put", "/", {"title": "hi"})

    writer.child("room/title").set("t2")
    assert next_event(events) == ("put", "/title", "t2")
    writer.child("room").update({"n": 2, "meta/by": "x"})
    assert next_event(events) == ("patch", "/", {"n": 2, "meta/by": "x"})
    writer.child("room/meta").update({"by": "y"})
    assert next_event(events) == ("patch", "/meta", {"by": "y"})
    msg = writer.child("room/msgs").push("hello")
    assert next_event(events) == ("put", f"/msgs/{msg.key}", "hello")
    writer.child("room/title").delete()
    assert next_event(events) == ("put", "/title", None)
    assert writer.child("room/n").transaction(lambda n: n + 1) == 3
    assert next_event(events) == ("put", "/n", 3)

    # Writes elsewhere and writes that change nothing send nothing, so the next event is the
    # one after them.
    writer.child("elsewhere").set(1)
    writer.child("room/n").set(3)
    writer.update({"room/n": 4, "other": 5})  # an ancestor update that changes the room
    assert next_event(events) == ("put", "/", {"n": 4, "meta": {"by": "y"}, "msgs": {msg.key: "hello"}})
    writer.set({"unrelated": True})
    assert next_event(events) == ("put", "/", None)
    assert events.empty()


def test_listener_on_missing_node_and_root(root: db.Reference, other_client: firebase_admin.App,
                                           listen: Callable) -> None:
    at_root = listen(root)
    assert next_event(at_root) == ("put", "/", None)
    missing = listen(root.child("not/yet"))
    assert next_event(missing) == ("put", "/", None)
    db.reference("not/yet/here", other_client).set(1)
    assert next_event(missing) == ("put", "/here", 1)
    assert next_event(at_root) == ("put", "/not/yet/here", 1)


def test_closing_a_listener_frees_its_server_stream(root: db.Reference, standin: RtdbStandin) -> None:
    baseline = standin.active_streams()
    events: queue.Queue[db.Event] = queue.Queue()
    registration = root.child("closing").listen(events.put)
    wait_until(lambda: standin.active_streams() == baseline + 1, "the stream to open")
    assert next_event(events) == ("put", "/", None)
    registration.close()
    wait_until(lambda: standin.active_streams() == baseline, "the server to drop the stream")


def test_two_hundred_concurrent_listeners(root: db.Reference, other_client: firebase_admin.App,
                                          standin: RtdbStandin) -> None:
    baseline = standin.active_streams()
    queues: list[queue.Queue[db.Event]] = [queue.Queue() for _ in range(200)]
    registrations = [root.child("fanout").listen(q.put) for q in queues]
    try:
        wait_until(lambda: standin.active_streams() == baseline + 200, "200 open streams")
        assert all(next_event(q) == ("put", "/", None) for q in queues)
        db.reference("fanout/news", other_client).set("hello all")
        assert all(next_event(q) == ("put", "/news", "hello all") for q in queues)
    finally:
        # close() blocks until the next keep-alive; closing in parallel keeps this quick
        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
            list(pool.map(lambda registration: registration.close(), registrations))
    wait_until(lambda: standin.active_streams() == baseline, "all 200 streams to close")


# --- namespaces -----------------------------------------------------------------------------

def test_namespaces_are_isolated(root: db.Reference, app: firebase_admin.App, standin: RtdbStandin) -> None:
    other_ns = db.reference("/", app, url="https://other-ns.firebaseio.com")
    by_ns_param = db.reference("/", app, url=f"{standin.url}?ns=third-ns")
    root.child("shared").set("demo-test")
    other_ns.child("shared").set("other-ns")
    by_ns_param.child("shared").set("third-ns")
    assert root.child("shared").get() == "demo-test"
    assert other_ns.child("shared").get() == "other-ns"
    assert by_ns_param.child("shared").get() == "third-ns"
    standin.reset()
    assert [ref.get() for ref in (root, other_ns, by_ns_param)] == [None, None, None]


# --- errors ---------------------------------------------------------------------------------

def test_invalid_key_is_a_firebase_error(root: db.Reference) -> None:
    with pytest.raises(exceptions.InvalidArgumentError, match="Invalid key"):
        root.child("x").set({"a.b": 1})
    with pytest.raises(exceptions.InvalidArgumentError, match="Invalid key"):
        root.child("x").update({"ok": {"bad$key": 1}})
    assert root.child("x").get() is None


def raw_request(server: RtdbStandin, method: str, target: str, body: Optional[bytes] = None,
                headers: Optional[dict[str, str]] = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=WAIT)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        response = conn.getresponse()
        payload = response.read()
        return response.status, json.loads(payload) if payload else None
    finally:
        conn.close()


@pytest.mark.parametrize("method, target, body, status, message", [
    ("PUT", "/a.json?ns=demo-test", b"{not json", 400, "couldn't parse JSON"),
    ("PUT", "/a.json?ns=demo-test", b"NaN", 400, "couldn't parse JSON"),
    ("PATCH", "/a.json?ns=demo-test", b"[1]", 400, "Invalid data"),
    ("PATCH", "/a.json?ns=demo-test", b'{"x": 1, "x/y": 2}', 400, "overlaps"),
    ("GET", "/a.json", None, 400, "Missing namespace"),
    ("GET", "/a?ns=demo-test", None, 400, ".json"),
    ("GET", "/a.json?ns=demo-test&orderBy=age", None, 400, "orderBy must be a valid JSON"),
    ("GET", '/a.json?ns=demo-test&limitToFirst=1', None, 400, "orderBy must be defined"),
    ("GET", '/a.json?ns=demo-test&orderBy="$key"&startAt=1', None, 400, "must be a string"),
    ("GET", '/a.json?ns=demo-test&orderBy="$key"&limitToFirst=-1', None, 400, "non-negative"),
    ("GET", '/a.json?ns=demo-test&shallow=true&orderBy="$key"', None, 400, "shallow"),
    ("GET", "/a.json?ns=demo-test&bogus=1", None, 400, "Invalid parameter"),
    ("HEAD", "/a.json?ns=demo-test", None, 405, None),
])
def test_error_responses_are_shaped_like_firebase(standin: RtdbStandin, method: str, target: str,
                                                  body: Optional[bytes], status: int,
                                                  message: Optional[str]) -> None:
    got_status, payload = raw_request(standin, method, target.replace('"', "%22"), body)
    assert got_status == status
    if message is not None:
        assert isinstance(payload, dict) and message in payload["error"]


def test_rest_details_the_sdk_does_not_show(standin: RtdbStandin) -> None:
    standin.reset()
    assert raw_request(standin, "PUT", "/r.json?ns=demo-test&print=silent", b'{"a": 1}') == (204, None)
    assert raw_request(standin, "PUT", "/r.json?ns=demo-test", b'{"a": 2}') == (200, {"a": 2})
    assert raw_request(standin, "DELETE", "/r.json?ns=demo-test") == (200, None)
    # the 412 of a failed conditional write carries the current value
    raw_request(standin, "PUT", "/r.json?ns=demo-test", b"7")
    assert raw_request(standin, "PUT", "/r.json?ns=demo-test", b"8", {"if-match": "stale"}) == (412, 7)
    assert raw_request(standin, "DELETE", "/r.json?ns=demo-test", None, {"if-match": "stale"}) == (412, 7)
    assert raw_request(standin, "GET", "/r.json?ns=demo-test&print=pretty") == (200, 7)


# --- lifecycle ------------------------------------------------------------------------------

def test_second_instance_gets_its_own_port_and_a_busy_port_raises(standin: RtdbStandin) -> None:
    with RtdbStandin() as other:
        assert other.port not in (0, standin.port)
        assert raw_request(other, "GET", "/.json?ns=x") == (200, None)
    with pytest.raises(OSError):
        RtdbStandin(port=standin.port).start()


def test_stop_then_start_serves_again_empty_on_the_same_port() -> None:
    server = RtdbStandin().start()
    try:
        raw_request(server, "PUT", "/a.json?ns=x", b"1")
        port = server.port
        server.stop()
        server.start()
        assert server.port == port
        assert raw_request(server, "GET", "/a.json?ns=x") == (200, None)
    finally:
        server.stop()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_announces_its_url_and_exits_cleanly(signum: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.rtdb_server", "--host", "127.0.0.1", "--port", "0"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip() if proc.stdout else ""
        assert line.startswith("rtdb stand-in listening on http://127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
        conn.request("PUT", "/a.json?ns=cli", body=b"1")
        assert conn.getresponse().status == 200
        conn.close()
        proc.send_signal(signum)
        assert proc.wait(timeout=WAIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
