"""In a real browser, with a running gateway and listeners worker: the dashboard's charts, the RPC errors panel, the
event viewer's live tail, the workers page, Restart confirmed from the listeners page, the API client form, the user
page found by prefix search with its Resync / Restart / Disconnect actions, and the signed-out state. Full-page screenshots go to ``test-artifacts/console/`` (git-ignored); their names are the steps.

Driven as tests/admin/test_browser_console.py does (Debian's chromium through Playwright, no browser download).
"""
from __future__ import annotations

import os
import re
import secrets

import pytest

from realtime.channels import user_channel
from realtime.publisher import publish_event
from tests.admin.test_browser_console import CHROMIUM, WORKER_ID, _rpc, console, staff_session  # noqa: F401
from tests.conftest import BASE_DIR, wait_until
from tests.realtime.wsclient import close_code, open_ws
from workflows import ownership

ARTIFACTS = BASE_DIR / "test-artifacts" / "console"
UID = "console-user"
PAGE_FITS = "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
FITS = "(() => { const r = document.querySelector('#changelist .results') || document.querySelector('#result_list').parentElement; return r.scrollWidth <= r.clientWidth; })()"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists() and os.environ.get("CI") != "true",
        reason="needs Debian's chromium package (apt-get install -y chromium)",
    ),
]


def test_staff_walk_the_console_with_live_data(console, service_token):  # noqa: F811 - the shared fixture
    from playwright.sync_api import expect

    address, password = console
    base = f"http://{address}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    registered = _rpc(address, service_token, "REGISTRY.register_user", UID, "console-session-1", user_id=UID,
                      idempotency_key=f"browser-{secrets.token_hex(4)}", kwargs={"backend_route": "reflex-1"})
    assert registered["ok"]
    ws = open_ws(address, service_token, uid=UID)
    wait_until(lambda: ownership.owner(UID) == WORKER_ID, timeout=30, message="the worker never took the user")
    assert _rpc(address, service_token, "REGISTRY.ping")["ok"]
    failed = _rpc(address, service_token, "REGISTRY.no_such_method", user_id=UID,
                  idempotency_key=f"browser-{secrets.token_hex(4)}")
    assert failed["error"]["code"] == "METHOD_NOT_FOUND"

    try:
        with staff_session(base, password) as (context, page):
            expect(page.locator("#nav-console")).to_be_visible()

            # Dashboard: the charts fill in as the processes flush (every second) and heart-beat (every 5 s).
            page.goto(f"{base}/admin/dashboard/")
            # At least this test's failed call (a long-lived gateway of the session may add one of its own).
            expect(page.locator('[data-chart="rpc_errors"] [data-part="last15"]')).to_have_text(
                re.compile(r"^[1-9]\d*$"), timeout=20_000)
            expect(page.locator('[data-chart="sockets"] [data-part="last15"]')).to_have_text("1", timeout=20_000)
            expect(page.locator("#gw-listeners-line")).to_have_text("1 user on 1 worker", timeout=20_000)
            expect(page.locator('[data-chart="rpc_calls"] svg.gw-spark')).to_have_count(2)
            page.screenshot(path=ARTIFACTS / "01-dashboard-charts.png", full_page=True)

            page.click('[data-chart="rpc_errors"]')  # cards link to their pages
            # register_user, ping, the failure; earlier tests' calls may still be in the last 5 minutes
            expect(page.locator("#rpc-window-5 h2")).to_contain_text(re.compile(r"\d+ calls, [1-9]\d* errors?"))
            expect(page.locator("#rpc-failures tbody tr").first).to_contain_text(failed["trace_id"])
            expect(page.locator("#rpc-failures tbody tr").first).to_contain_text("METHOD_NOT_FOUND")
            page.screenshot(path=ARTIFACTS / "02-rpc-errors-panel.png", full_page=True)

            page.goto(f"{base}/admin/console/workers/")
            worker_row = page.locator(f'tr[data-worker="{WORKER_ID}"]')
            expect(worker_row.locator(".gw-badge")).to_have_text("alive")
            expect(worker_row).to_contain_text(re.compile(r"UTC (now|\d+ s ago)"))
            # This gateway's process (other gateways of the test session may be listed too) holds the user's socket.
            expect(page.locator('#asgi-processes tr[data-sockets="1"] .gw-badge-ok')).to_have_count(1)
            page.screenshot(path=ARTIFACTS / "03-workers-page.png", full_page=True)

            # Event viewer: the worker's sync events are there; one published now appears by the live tail.
            page.goto(f"{base}/admin/console/events/?channel={user_channel(UID)}")
            expect(page.locator("#gw-events tbody tr").first).to_be_visible()
            published = publish_event(UID, "notif.job_updated", {"job_id": "from-the-browser-test"})
            expect(page.locator(f'#gw-events tr[data-seq="{published.seq}"]')).to_contain_text("from-the-browser-test")
            page.screenshot(path=ARTIFACTS / "04-event-viewer-live-tail.png", full_page=True)
            page.goto(f"{base}/admin/console/events/?channel={user_channel(UID)}&type=notif.job")
            expect(page.locator("#gw-events tbody tr")).to_have_count(1)

            # Restart from the listeners page: confirmed done, one restart, "since" moved (was +3 and unchanged).
            page.goto(f"{base}/admin/workflows/listenerstate/?q={UID}")
            row = page.locator("#result_list tbody tr", has_text=UID)
            expect(row.locator("td.field-restarts")).to_have_text("0")
            since_before = row.locator("td.field-since_age").inner_text()
            row.locator("input.action-select").check()
            page.select_option("select[name=action]", "restart")
            page.click("button[name=index]")
            expect(page.locator("ul.messagelist li.success")).to_have_text("Restart done for 1 user.")
            expect(row.locator("td.field-restarts")).to_have_text("1")
            assert row.locator("td.field-since_age").inner_text() != since_before
            page.screenshot(path=ARTIFACTS / "05-listeners-restart-confirmed.png", full_page=True)

            # Changelists fit 1,400 px: no horizontal scrolling, words not broken.
            for changelist in ("workflows/listenerstate", "registry/session"):
                page.goto(f"{base}/admin/{changelist}/?q={UID}")
                expect(page.locator("#result_list tbody tr")).to_have_count(1)
                page.screenshot(path=ARTIFACTS / f"06-{changelist.split('/')[1]}-changelist-1400px.png", full_page=True)
                assert page.evaluate(FITS), changelist

            page.goto(f"{base}/admin/rpc/apiclient/add/")
            label = page.locator("#id_namespaces label", has_text="FIREBASE_MANAGEMENT")
            box = label.bounding_box()
            assert box is not None and box["height"] < 30  # one line: never wrapped mid-word
            page.screenshot(path=ARTIFACTS / "07-api-client-form.png", full_page=True)

            # The user page, found by a prefix in the header's search box (one user matches: straight to its page).
            page.fill("#gw-user-search input[name=q]", "console-")
            page.click("#gw-user-search input[type=submit]")
            expect(page).to_have_url(f"{base}/admin/console/users/{UID}/")
            expect(page.locator("#session-console-session-1")).to_contain_text("online")
            expect(page.locator("#session-console-session-1")).to_contain_text(re.compile(r"expires in \d"))
            expect(page.locator('#gw-user-members tr[data-kind="socket"]')).to_have_count(1)
            expect(page.locator(f'#gw-user-listeners tr[data-worker="{WORKER_ID}"]')).to_contain_text("notifications")
            expect(page.locator('#gw-attach-reasons [data-reason="socket"]')).to_have_count(1)
            expect(page.locator('#gw-attach-reasons [data-reason="session"]')).to_contain_text("console-session-1")
            expect(page.locator("#gw-user-events #gw-events tbody tr").first).to_have_attribute("data-seq", re.compile(r"\d+"))
            assert page.evaluate(PAGE_FITS)
            page.screenshot(path=ARTIFACTS / "09-user-page.png", full_page=True)

            seq_before = int(page.locator("#gw-user-seq").inner_text())
            page.click("button[value=resync]")
            expect(page.locator("ul.messagelist li.success")).to_have_text(
                f"Resync done for {UID}: notif.sync and msg.sync published.")
            assert int(page.locator("#gw-user-seq").inner_text()) >= seq_before + 2
            expect(page.locator("#gw-user-events #gw-events tbody")).to_contain_text("msg.sync")
            page.screenshot(path=ARTIFACTS / "10-user-page-resync-done.png", full_page=True)

            restarts = page.locator(f'#gw-user-listeners tr[data-worker="{WORKER_ID}"] [data-part="restarts"]')
            expect(restarts).to_have_text("1")  # the listeners page's restart above
            page.click("button[value=restart]")
            expect(page.locator("ul.messagelist li.success")).to_have_text(f"Listeners of {UID} restarted.")
            expect(restarts).to_have_text("2")  # one more, not three
            page.screenshot(path=ARTIFACTS / "11-user-page-restart-done.png", full_page=True)

            page.click("button[value=disconnect]")
            expect(page.locator("ul.messagelist li.success")).to_have_text(
                "1 session closed; 1 socket disconnected.")
            assert close_code(ws) == 4000
            expect(page.locator("#gw-user-summary")).to_contain_text("0 live sessions, 0 open sockets")
            # Offline, the listeners stay for the detach grace period: the page says why.
            expect(page.locator('#gw-attach-reasons [data-reason="grace"]')).to_have_count(1)
            ended = page.locator("#gw-user-ended", has_text="console-session-1")

            def ended_shown() -> bool:  # the worker's sweeper writes ended sessions to SQL in batches
                page.goto(f"{base}/admin/console/users/{UID}/")
                return ended.count() == 1

            wait_until(ended_shown, timeout=40, interval=1, message="the closed session never reached the history")
            page.screenshot(path=ARTIFACTS / "12-user-page-disconnected.png", full_page=True)
            page.click("button[value=disconnect]")  # nothing live any more: refused, not "0 sessions closed"
            expect(page.locator("ul.messagelist li.warning")).to_have_text(
                f"Nothing to disconnect: {UID} has no live session and no open socket.")
            page.screenshot(path=ARTIFACTS / "13-user-page-disconnect-refused.png", full_page=True)

            # Signed out: the dashboard says so (and stops) instead of showing stale numbers.
            page.goto(f"{base}/admin/dashboard/")
            context.clear_cookies()
            expect(page.locator("#gw-signed-out")).to_be_visible(timeout=20_000)
            page.screenshot(path=ARTIFACTS / "08-dashboard-signed-out.png", full_page=True)
    finally:
        ws.close()
