"""The batched companies reads behind the notification and message syncs (workflows/companies.py)."""
from __future__ import annotations

import threading
from typing import Iterator

import pytest
import redis

from registry.services import register_session
from workflows.companies import Companies, CompaniesReader, read_companies
from workflows.firestore_streams import EventLoopThread

from .conftest import db


@pytest.fixture
def loop() -> Iterator[EventLoopThread]:
    thread = EventLoopThread("companies-test-loop")
    yield thread
    thread.stop()


class Answers:
    def __init__(self) -> None:
        self.got: dict[str, list[tuple[Companies, bool]]] = {}
        self.lock = threading.Lock()
        self.done = threading.Condition(self.lock)

    def callback(self, uid: str):
        def answer(companies: Companies, available: bool) -> None:
            with self.lock:
                self.got.setdefault(uid, []).append((companies, available))
                self.done.notify_all()
        return answer

    def wait(self, count: int) -> dict[str, list[tuple[Companies, bool]]]:
        with self.lock:
            assert self.done.wait_for(lambda: sum(map(len, self.got.values())) >= count, timeout=30)
            return dict(self.got)


def test_registrations_then_the_apps_document_decide_for_each_user():
    register_session(user_id="co-a", session_id="s", authorized_companies=["c2", "c1"])
    db().document("listeners_registry/co-b").set({"authorized_companies_ids": ["c3"]})
    db().document("listeners_registry/co-a").set({"authorized_companies_ids": ["ignored"]})
    assert read_companies(["co-a", "co-b", "co-none"]) == {"co-a": {"c1", "c2"}, "co-b": {"c3"}, "co-none": None}


def test_requests_made_while_a_read_runs_are_read_together_and_a_fresh_read_is_shared(loop):
    uids = [f"co-many-{n}" for n in range(200)]
    for uid in uids[::2]:
        register_session(user_id=uid, session_id="s", authorized_companies=[f"c-{uid}"])
    reader = CompaniesReader(loop, fresh_s=60)
    answers = Answers()
    for uid in uids:
        reader.request(uid, answers.callback(uid))
    got = answers.wait(len(uids))
    assert {uid: got[uid] for uid in uids} == {
        uid: [({f"c-{uid}"} if n % 2 == 0 else None, True)] for n, uid in enumerate(uids)}
    assert reader.reads < len(uids) / 10  # batched: the first read, then the ones queued meanwhile
    reads = reader.reads
    reader.request(uids[0], answers.callback(uids[0]))  # the other kind of the same user, just after: shared
    assert answers.wait(len(uids) + 1)[uids[0]][-1] == ({f"c-{uids[0]}"}, True)
    assert reader.reads == reads


def test_a_failed_read_answers_unavailable_and_the_next_request_reads_again(loop):
    failures = [redis.ConnectionError("down")]

    def read(uids: list[str]) -> dict[str, Companies]:
        if failures:
            raise failures.pop()
        return {uid: {"c1"} for uid in uids}

    reader = CompaniesReader(loop, fresh_s=60, read=read)
    answers = Answers()
    reader.request("co-x", answers.callback("co-x"))
    assert answers.wait(1)["co-x"] == [(None, False)]
    reader.request("co-x", answers.callback("co-x"))
    assert answers.wait(2)["co-x"][-1] == ({"c1"}, True)
