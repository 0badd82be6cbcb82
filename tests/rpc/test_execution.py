"""Execution internals: the worker threads, DB connection hygiene on them, and the call context they carry."""
from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import pytest

from rpc import execution
from rpc.execution import WorkerThreads, release_db_connections


def run(coroutine):
    return asyncio.run(coroutine)


def test_worker_threads_run_calls_off_the_loop_and_deliver_results_and_exceptions():
    workers = WorkerThreads(max_workers=2, name="unit")

    async def scenario():
        loop_thread = threading.get_ident()
        ran_on = await workers.run(threading.get_ident)
        with pytest.raises(KeyError):
            await workers.run({}.__getitem__, "missing")
        return loop_thread, ran_on

    loop_thread, ran_on = run(scenario())
    assert ran_on != loop_thread


def test_worker_threads_start_on_demand_up_to_the_maximum_then_queue():
    workers = WorkerThreads(max_workers=3, name="unit-max")
    release = threading.Event()
    active: set[int] = set()

    def block() -> int:
        active.add(threading.get_ident())
        release.wait(10)
        return threading.get_ident()

    async def scenario():
        calls = [workers.run(block) for _ in range(6)]
        from tests.conftest import wait_until

        await asyncio.to_thread(wait_until, lambda: len(active) == 3, 10)
        assert workers._threads == 3  # the other three calls wait in the queue
        release.set()
        return await asyncio.gather(*calls)

    threads_used = set(run(scenario()))
    assert len(threads_used) == 3


def test_idle_threads_are_reused_not_multiplied():
    workers = WorkerThreads(max_workers=64, name="unit-reuse")

    async def scenario():
        for _ in range(50):
            await workers.run(lambda: None)

    run(scenario())
    assert workers._threads == 1


def fake_connection(**state):
    defaults = {"connection": object(), "in_atomic_block": False, "close_at": None, "errors_occurred": False}
    connection = SimpleNamespace(**{**defaults, **state}, closed=False, queries_log=[])
    connection.close = lambda: setattr(connection, "closed", True)
    return connection


def test_release_db_connections_applies_djangos_end_of_request_rule(monkeypatch):
    now = time.monotonic()
    expired = fake_connection(close_at=now - 1)             # CONN_MAX_AGE passed (0 = after every call)
    broken = fake_connection(errors_occurred=True)          # e.g. the server restarted under it
    persistent = fake_connection(close_at=None)             # CONN_MAX_AGE=None: keep
    fresh = fake_connection(close_at=now + 60)              # within CONN_MAX_AGE: keep
    in_transaction = fake_connection(close_at=now - 1, in_atomic_block=True)  # never close mid-transaction
    unopened = fake_connection(connection=None, close_at=now - 1)
    fakes = [expired, broken, persistent, fresh, in_transaction, unopened]
    monkeypatch.setattr(execution.connections, "all", lambda initialized_only=False: fakes)
    release_db_connections()
    assert [c.closed for c in fakes] == [True, True, False, False, False, False]


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["RPCTEST.seen_context", "RPCTEST.seen_context_async"])
def test_method_bodies_see_the_calls_trace_id_and_log_context(rpc, method):
    seen = rpc(method, user_id="alice", trace_id="trace-into-the-body").data
    assert seen["trace_id"] == "trace-into-the-body"
    assert seen["log_context"]["rpc_method"] == method
    assert seen["log_context"]["uid"] == "alice"


@pytest.mark.django_db(transaction=True)
def test_debugs_query_log_is_cleared_after_each_method_on_the_fast_path(rpc, settings):
    """The fast path never sends request_started, so nothing else would reset DEBUG's per-connection query log
    (issue 21: up to 9,000 queries kept per worker thread)."""
    settings.DEBUG = True
    assert [rpc("RPCTEST.query_log_size").data for _ in range(40)] == [0] * 40
