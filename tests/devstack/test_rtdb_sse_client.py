"""The asyncio Realtime DB stream client (core/integrations/rtdb_sse.py) against the stand-in: events, reconnects,
stalls, token refresh, ``cancel``, and many streams on one pool. Each test drives the stand-in's stream controls
(devstack/rtdb_server.py) and waits on conditions."""
from __future__ import annotations

import json
import queue
import time
from typing import Any, Iterator

import firebase_admin
import httpx
import pytest
from firebase_admin import credentials, db
from google.auth.credentials import AnonymousCredentials

from core.integrations.rtdb_sse import EMULATOR_HOST_ENV, RtdbEndpoint, RtdbStreamClient, SseListener, static_token
from devstack.rtdb_server import RtdbStandin
from tests.conftest import wait_until
from workflows.firestore_streams import EventLoopThread

pytestmark = pytest.mark.timeout(120)

NS = "sse-client"
KEEPALIVE_S = 0.2
Event = tuple[str, str, Any]


@pytest.fixture(scope="module")
def standin() -> Iterator[RtdbStandin]:
    server = RtdbStandin(keepalive_interval=KEEPALIVE_S).start()
    yield server
    server.stop()


@pytest.fixture
def loop() -> Iterator[EventLoopThread]:
    loop = EventLoopThread("sse-test-loop")
    yield loop
    loop.stop()


class Streams:
    """A client on the test's loop; its listeners' events land in queues."""

    def __init__(self, loop: EventLoopThread, standin: RtdbStandin, token: Any = None) -> None:
        self.loop = loop
        self.standin = standin
        endpoint = RtdbEndpoint(standin.url, {"ns": NS}, token or static_token(None))

        async def make() -> RtdbStreamClient:
            return RtdbStreamClient(endpoint)
        self.client = loop.run(make())

    def listen(self, path: str) -> tuple[SseListener, "queue.Queue[Event]"]:
        events: queue.Queue[Event] = queue.Queue()
        return self.client.listen(path, lambda *event: events.put(event)), events

    def close(self) -> None:
        self.loop.run(self.client.aclose())


@pytest.fixture
def streams(loop: EventLoopThread, standin: RtdbStandin) -> Iterator[Streams]:
    standin.reset()
    standin.require_token(None)
    standin.hold_keepalives(False)
    made = Streams(loop, standin)
    yield made
    made.close()


def write(standin: RtdbStandin, method: str, path: str, value: Any) -> None:
    httpx.request(method, f"{standin.url}/{path}.json", params={"ns": NS}, content=json.dumps(value)).raise_for_status()


def next_event(events: "queue.Queue[Event]") -> Event:
    return events.get(timeout=20)


def test_put_and_patch_events_arrive_with_their_paths(streams: Streams, standin: RtdbStandin) -> None:
    write(standin, "PUT", "room", {"title": "hi"})
    listener, events = streams.listen("room")
    assert next_event(events) == ("put", "/", {"title": "hi"})
    write(standin, "PUT", "room/title", "t2")
    assert next_event(events) == ("put", "/title", "t2")
    write(standin, "PATCH", "room", {"n": 2, "meta/by": "x"})
    assert next_event(events) == ("patch", "/", {"n": 2, "meta/by": "x"})
    assert listener.failure is None and listener.connects == 1


def test_a_stream_the_server_ends_is_reopened_with_a_fresh_snapshot(streams: Streams, standin: RtdbStandin) -> None:
    listener, events = streams.listen("room")
    assert next_event(events) == ("put", "/", None)
    standin.end_streams()
    wait_until(lambda: listener.connects == 2)
    assert next_event(events) == ("put", "/", None)  # the reconnect's first event: the whole node again
    write(standin, "PUT", "room/after", 1)
    assert next_event(events) == ("put", "/after", 1)
    assert listener.failure is None


def test_a_restarted_server_is_reconnected_with_a_backoff(streams: Streams, standin: RtdbStandin) -> None:
    listener, events = streams.listen("room")
    assert next_event(events) == ("put", "/", None)
    standin.stop()  # refused connections meanwhile: the listener backs off and retries
    standin.start()
    wait_until(lambda: standin.active_streams() == 1)
    assert next_event(events) == ("put", "/", None)
    assert listener.failure is None


def test_a_stream_whose_keepalives_stop_is_stalled(streams: Streams, standin: RtdbStandin) -> None:
    listener, events = streams.listen("quiet")
    assert next_event(events) == ("put", "/", None)
    wait_until(lambda: listener.keepalive_gap is not None)
    assert not listener.stalled(time.monotonic(), stall_s=1.0)
    standin.hold_keepalives(True)
    wait_until(lambda: listener.stalled(time.monotonic(), stall_s=1.0))
    standin.hold_keepalives(False)
    wait_until(lambda: not listener.stalled(time.monotonic(), stall_s=1.0))


def test_a_stream_without_keepalives_is_never_stalled(streams: Streams, standin: RtdbStandin) -> None:
    standin.hold_keepalives(True)
    listener, events = streams.listen("silent")
    assert next_event(events) == ("put", "/", None)
    assert not listener.stalled(time.monotonic() + 3600, stall_s=1.0)


class Tokens:
    """A token provider that hands out ``tok-1``, ``tok-2``... and records the stale token of each call."""

    def __init__(self) -> None:
        self.issued = 0
        self.calls: list[str | None] = []

    async def __call__(self, stale: str | None) -> str:
        self.calls.append(stale)
        if self.issued == 0 or stale == f"tok-{self.issued}":
            self.issued += 1
        return f"tok-{self.issued}"


def test_a_refused_token_is_refreshed_and_the_stream_opens(loop: EventLoopThread, standin: RtdbStandin) -> None:
    standin.reset()
    standin.require_token("tok-2")  # the first token is refused with a 401
    tokens = Tokens()
    streams = Streams(loop, standin, tokens)
    try:
        listener, events = streams.listen("secure")
        assert next_event(events) == ("put", "/", None)
        assert tokens.calls == [None, "tok-1"] and listener.connects == 2
    finally:
        streams.close()
        standin.require_token(None)


def test_auth_revoked_reconnects_with_a_fresh_token(loop: EventLoopThread, standin: RtdbStandin) -> None:
    standin.reset()
    standin.require_token("tok-1")
    tokens = Tokens()
    streams = Streams(loop, standin, tokens)
    try:
        listener, events = streams.listen("secure")
        assert next_event(events) == ("put", "/", None)
        standin.require_token("tok-2")
        standin.send_to_streams("auth_revoked", '"credential is no longer valid"')
        assert next_event(events) == ("put", "/", None)
        assert tokens.calls == [None, "tok-1"] and listener.connects == 2 and listener.failure is None
    finally:
        streams.close()
        standin.require_token(None)


def test_cancel_stops_the_stream_for_good(streams: Streams, standin: RtdbStandin) -> None:
    listener, events = streams.listen("denied")
    assert next_event(events) == ("put", "/", None)
    standin.send_to_streams("cancel", '"Permission denied"')
    wait_until(lambda: listener.failure == "cancelled")
    wait_until(lambda: standin.active_streams() == 0)
    assert listener.connects == 1


def test_close_frees_the_server_stream(streams: Streams, standin: RtdbStandin) -> None:
    listener, events = streams.listen("closing")
    assert next_event(events) == ("put", "/", None)
    listener.close()
    wait_until(lambda: standin.active_streams() == 0)
    assert listener.closed and listener.failure is None


def test_five_hundred_streams_share_one_client(streams: Streams, standin: RtdbStandin) -> None:
    opened = [streams.listen(f"fanout/{number % 50}") for number in range(500)]
    assert all(next_event(events) == ("put", "/", None) for _, events in opened)
    assert standin.active_streams() == 500
    write(standin, "PATCH", "fanout", {str(number): {"news": number} for number in range(50)})
    assert all(next_event(events) == ("put", "/", {"news": number % 50})
               for number, (_, events) in enumerate(opened))


class _NoCredential(credentials.Base):
    def get_credential(self) -> AnonymousCredentials:
        return AnonymousCredentials()


@pytest.mark.parametrize("url, emulator_host", [
    ("http://127.0.0.1:9009?ns=by-url", None),
    ("https://by-host.firebaseio.com", "127.0.0.1:9010"),
    ("https://production.firebaseio.com", None),
])
def test_the_endpoint_is_the_database_the_sdk_addresses(url: str, emulator_host: str | None,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Streams and the SDK's REST calls (core/integrations/rtdb.py) must reach the same database."""
    if emulator_host:
        monkeypatch.setenv(EMULATOR_HOST_ENV, emulator_host)
    else:
        monkeypatch.delenv(EMULATOR_HOST_ENV, raising=False)
    app = firebase_admin.initialize_app(_NoCredential(), {"databaseURL": url}, name=f"sse-endpoint-{url}")
    try:
        sdk = db.reference("/", app)._client  # firebase-admin==7.7.0 (pinned): the REST client the SDK built
        endpoint = RtdbEndpoint.for_app(app)
        assert (endpoint.base_url, endpoint.params) == (sdk.base_url, sdk.params)
    finally:
        firebase_admin.delete_app(app)
