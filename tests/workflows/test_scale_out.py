"""Two workers as real processes share 200 online users through Redis leases; a SIGKILLed worker's users move over."""
from __future__ import annotations

import os
import sqlite3
import threading
import time
import urllib.request
from collections import Counter

import pytest

from devstack import services
from devstack.processes import free_port
from core.integrations.redis import get_redis
from realtime import presence
from tests.conftest import migrate, wait_until
from tests.workflows.conftest import db, user_events
from workflows import ownership

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

USERS = [f"so-{number:03d}" for number in range(200)]
LEASE_TTL_S = 3.0


def start_worker(stack, name: str, *options: str):
    env = {**os.environ, **stack.env}
    process = services.manage_py(
        name, ["run_listeners", "--worker-id", name, "--lease-ttl", str(LEASE_TTL_S), *options], stack.run_dir, env,
        ready=lambda: ownership.registered_workers().get(name),
    )
    return process.start()


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:  # noqa: S310 - loopback
        return response.read().decode()


def worker_stat(name: str, field: str) -> int:
    value = get_redis().hget(ownership.stats_key(name), field)
    return int(value or 0)


def leases() -> dict[str, str | None]:
    return ownership.owners(USERS)


def step_events_per_user() -> Counter:
    return Counter({uid: len(user_events(uid, "workflow.step_update")) for uid in USERS})


def change_every_job(value: int) -> None:
    batch = db().batch()
    for uid in USERS:
        batch.set(db().document(f"clients/{uid}/task_manager/job"), {"APBookeeper_step_status": {"s": value}})
    batch.commit()


def state_rows(stack) -> Counter:
    with sqlite3.connect(stack.run_dir / "gateway.sqlite3") as connection:
        return Counter(worker for (worker,) in connection.execute("SELECT worker_id FROM workflows_listenerstate"))


def wait_for_takeover(killed_at: float) -> dict[str, float]:
    """Seconds from the kill until worker-a was declared dead, held no lease, and worker-b had every user ready."""
    phases: dict[str, float] = {}

    def taken_over() -> bool:
        elapsed = time.monotonic() - killed_at
        if "declared_dead" not in phases and not ownership.registered_workers().get("worker-a"):
            phases["declared_dead"] = elapsed
        if "claimed" not in phases and set(leases().values()) == {"worker-b"}:
            phases["claimed"] = elapsed
        if "claimed" in phases and worker_stat("worker-b", "ready_users") == 200:
            phases["ready"] = elapsed
        return "ready" in phases

    wait_until(taken_over, timeout=30, interval=0.05)
    return {name: round(value, 2) for name, value in phases.items()}


def test_two_workers_share_users_and_a_killed_workers_users_move_without_duplicates(stack):
    migrate({**os.environ, **stack.env})
    with sqlite3.connect(stack.run_dir / "gateway.sqlite3") as connection:
        connection.execute("DELETE FROM workflows_listenerstate")
    change_every_job(0)
    metrics_port = free_port()
    first = start_worker(stack, "worker-a")
    second = start_worker(stack, "worker-b", "--metrics-port", str(metrics_port))
    stop_heartbeats = threading.Event()

    def keep_users_online() -> None:  # sessions expire after LISTENERS_TTL_SECONDS without a heartbeat
        while not stop_heartbeats.is_set():
            for uid in USERS:
                presence.join(uid, presence.session_member(f"session-{uid}"))
            stop_heartbeats.wait(20)

    heartbeats = threading.Thread(target=keep_users_online, daemon=True)
    heartbeats.start()
    try:
        wait_until(lambda: worker_stat("worker-a", "ready_users") + worker_stat("worker-b", "ready_users") == 200,
                   timeout=90)
        owners = leases()
        assert set(owners.values()) == {"worker-a", "worker-b"}
        split = Counter(owners.values())
        assert min(split.values()) >= 50, split  # rendezvous hashing spreads the users...
        # ...and each user went to its preferred worker: both workers saw each other before the users came online.
        assert owners == {uid: ownership.preferred_worker(uid, ["worker-a", "worker-b"]) for uid in USERS}
        assert (worker_stat("worker-a", "users"), worker_stat("worker-b", "users")) == (split["worker-a"],
                                                                                          split["worker-b"])
        wait_until(lambda: state_rows(stack) == split, timeout=15)
        wait_until(lambda: all(len(user_events(uid, "notif.sync")) == 1 for uid in USERS), timeout=30)

        change_every_job(1)
        wait_until(lambda: set(step_events_per_user().values()) == {1}, timeout=30)

        killed_at = time.monotonic()
        first.kill()
        phases = wait_for_takeover(killed_at)
        print(f"takeover, seconds after the SIGKILL: {phases}")  # shown with -s
        # Within the lease TTL, from the SIGKILL: the survivor saw the dead worker's subscription go, deleted its
        # leases and re-attached all of its users (every initial snapshot processed) without waiting for expiry.
        assert phases["ready"] < LEASE_TTL_S, phases
        wait_until(lambda: state_rows(stack) == Counter({"worker-b": 200}), timeout=15)
        assert 'gateway_listeners_active{kind="notifications"} 200.0' in scrape(metrics_port)

        change_every_job(2)
        wait_until(lambda: set(step_events_per_user().values()) == {2}, timeout=30)
        # Later traffic for everyone (a notification each): still exactly one step event per change and user.
        batch = db().batch()
        for uid in USERS:
            batch.set(db().document(f"clients/{uid}/notifications/later"), {"read": False})
        batch.commit()
        wait_until(lambda: all(user_events(uid, "notif.sync")[-1]["payload"]["count"] == 1 for uid in USERS),
                   timeout=30)
        assert set(step_events_per_user().values()) == {2}
        assert all(user_events(uid, "workflow.step_update")[-1]["payload"]["step_changes"]
                   == {"APBookeeper_step_status": {"s": 2}} for uid in USERS)
    finally:
        stop_heartbeats.set()
        first.stop()
        second.stop()
