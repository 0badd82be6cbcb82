"""End to end in a real browser: staff log into the admin, see a session registered through /rpc and the listeners
the worker attached for it, run the disconnect action, and see the user go offline.

Headless Chromium is Debian's ``chromium`` package (/usr/bin/chromium) driven by Playwright's Python client; no
browser is downloaded. The gateway and the listeners worker run as real processes on one file database (so the admin
shows what the worker wrote). Screenshots of each step go to ``test-artifacts/admin-console/`` (git-ignored).
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from devstack import services as dev_services
from realtime import presence
from tests.conftest import BASE_DIR, start_gateway, wait_until
from tests.realtime.wsclient import close_code, open_ws
from workflows import ownership

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = BASE_DIR / "test-artifacts" / "admin-console"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
]
UID, SESSION_ID, WORKER_ID = "browser-user", "browser-session-1", "browser-worker"

pytestmark = [
    pytest.mark.slow,
    # Skipped only on a developer machine without chromium; in CI (.ci/run installs it) a missing browser fails.
    pytest.mark.skipif(
        not CHROMIUM.exists() and os.environ.get("CI") != "true",
        reason="needs Debian's chromium package (apt-get install -y chromium)",
    ),
]


@contextlib.contextmanager
def staff_session(base: str, password: str) -> Iterator[tuple[Any, Any]]:
    """Debian's chromium (never a downloaded browser), logged in to the admin as staff: (browser context, page)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.set_default_timeout(30_000)
            page = context.new_page()
            page.goto(f"{base}/admin/login/")
            page.fill("#id_username", "staff")
            page.fill("#id_password", password)
            page.click("input[type=submit]")
            yield context, page
        finally:
            browser.close()


def _rpc(address: str, token: str, method: str, *args: object, **envelope: object) -> dict:
    body = json.dumps({"method": method, "args": list(args), **envelope}).encode()
    request = urllib.request.Request(
        f"http://{address}/rpc", data=body, method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback URL we built
        return json.loads(response.read())


@pytest.fixture
def console(stack, tmp_path):
    """A gateway and a listeners worker sharing a fresh file database that holds one superuser."""
    env = {**os.environ, **stack.env, "DATABASE_URL": f"sqlite:///{tmp_path / 'console.sqlite3'}"}
    gateway, address = start_gateway(stack, extra_env=env, name="asgi-admin-console")  # migrates that database
    password = secrets.token_urlsafe(12)
    subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), "createsuperuser", "--noinput", "--username", "staff",
         "--email", "staff@example.test"],
        env={**env, "DJANGO_SUPERUSER_PASSWORD": password}, cwd=BASE_DIR, check=True, capture_output=True,
    )
    worker = dev_services.manage_py(
        "listeners-admin-console", ["run_listeners", "--worker-id", WORKER_ID, "--lease-ttl", "3"], stack.run_dir, env,
        ready=lambda: ownership.registered_workers().get(WORKER_ID, False),
    ).start()
    try:
        yield address, password
    finally:
        worker.stop()
        gateway.stop()


def test_staff_disconnect_a_session_from_the_admin_and_the_user_goes_offline(console, service_token):
    from playwright.sync_api import expect

    address, password = console
    base = f"http://{address}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    registered = _rpc(address, service_token, "REGISTRY.register_user", UID, SESSION_ID, user_id=UID,
                      idempotency_key=f"browser-{secrets.token_hex(4)}", kwargs={"backend_route": "reflex-1"})
    assert registered["ok"] and registered["data"]["session_id"] == SESSION_ID
    ws = open_ws(address, service_token, uid=UID)
    wait_until(lambda: ownership.owner(UID) == WORKER_ID, timeout=30, message="the worker never took the user")

    with staff_session(base, password) as (context, page):
        expect(page.locator("#gateway-dashboard-link")).to_be_visible()
        page.screenshot(path=ARTIFACTS / "01-admin-index.png", full_page=True)

        page.goto(f"{base}/admin/registry/session/?q={UID}")
        row = page.locator("#result_list tbody tr", has_text=SESSION_ID)
        expect(row).to_have_count(1)
        expect(row.locator("td.field-state")).to_have_text("online")
        expect(row.locator("td.field-sockets")).to_have_text("1")
        page.screenshot(path=ARTIFACTS / "02-session-registered-over-rpc.png", full_page=True)

        # The worker writes its ListenerState rows within a second or so of attaching: reload until shown.
        listeners = f"{base}/admin/workflows/listenerstate/?q={UID}"
        listener_row = page.locator("#result_list tbody tr", has_text=WORKER_ID)

        def listener_shown() -> bool:
            page.goto(listeners)
            return listener_row.count() == 1

        wait_until(listener_shown, timeout=30, interval=0.5, message="no listener row in the admin")
        expect(listener_row.locator("td.field-listener_kinds")).to_contain_text("notifications")
        page.screenshot(path=ARTIFACTS / "03-listener-attached-by-worker.png", full_page=True)

        # A second tab keeps the dashboard open: its counts refresh by themselves (no reload).
        dashboard = context.new_page()
        dashboard.goto(f"{base}/admin/dashboard/")
        expect(dashboard.locator('[data-stat="users_online"]')).to_have_text("1")
        expect(dashboard.locator('[data-stat="sockets"]')).to_have_text("1")
        expect(dashboard.locator("#gw-listeners-by-kind")).to_contain_text("notifications: 1")
        dashboard.screenshot(path=ARTIFACTS / "04-dashboard-user-online.png", full_page=True)

        page.goto(f"{base}/admin/registry/session/?q={UID}")
        row.locator("input.action-select").check()
        page.select_option("select[name=action]", "disconnect")
        page.click("button[name=index]")
        expect(page.locator("ul.messagelist li.success")).to_have_text(
            "1 session closed; sockets of 1 user disconnected."
        )
        expect(row).to_have_count(0)  # live sessions are Redis state: a closed one is gone from this page
        page.screenshot(path=ARTIFACTS / "05-after-disconnect-action.png", full_page=True)

        assert close_code(ws) == 4000
        wait_until(lambda: not presence.is_online(UID), message="the user stayed online")
        # The worker's sweeper writes ended sessions to the SQL history in batches: reload until shown.
        history_row = page.locator("#result_list tbody tr", has_text=SESSION_ID)

        def history_shown() -> bool:
            page.goto(f"{base}/admin/registry/sessionrecord/?q={UID}")
            return history_row.count() == 1

        wait_until(history_shown, timeout=40, interval=1, message="the ended session never reached the history")
        expect(history_row.locator("td.field-status")).to_have_text("closed")
        expect(dashboard.locator('[data-stat="users_online"]')).to_have_text("0", timeout=20_000)
        expect(dashboard.locator('[data-stat="sockets"]')).to_have_text("0")
        dashboard.screenshot(path=ARTIFACTS / "06-dashboard-user-offline.png", full_page=True)
