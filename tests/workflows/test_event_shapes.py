"""Pure parts of the listeners: item formats, workflow diffs, the RTDB mirror and sync coalescing."""
from __future__ import annotations

import datetime as dt

import pytest

from workflows import events
from workflows.debounce import Debouncer
from workflows.rtdb_streams import apply_event, new_children


def test_items_keep_the_original_keys_and_defaults():
    item = events.notification_item({}, "d1")
    assert item == {
        "message": "Document - info", "file_name": "Document", "collection_id": "", "collection_name": "",
        "url": "/edit_form/", "status": "info", "read": False, "doc_id": "d1", "job_id": "", "file_id": "",
        "function_name": "", "timestamp": "", "additional_info": "{}", "info_message": "",
    }
    stored = {"timestamp": "2025-09-20 11:44:00.123", "additional_info": '{"message": "hi"}'}
    message = events.message_item(stored, "m1")
    assert set(message) == set(item) - {"read", "info_message"}
    assert message["timestamp"] == "2025-09-20 11:44:00.123"  # RTDB text passes through
    assert events.info_message('{"message": "hi"}') == "hi"
    assert events.info_message("not json") == ""


def test_sync_payload_is_newest_first_bounded_and_counts_everything():
    items = [events.notification_item({"timestamp": dt.datetime(2025, 1, 1, 0, 0, n % 60, tzinfo=dt.timezone.utc)},
                                      f"d{n}") for n in range(250)]
    payload = events.sync_payload("notifications", items)
    assert payload["count"] == 250
    assert len(payload["notifications"]) == events.SYNC_MAX_ITEMS
    stamps = [item["timestamp"] for item in payload["notifications"]]
    assert stamps == sorted(stamps, reverse=True)


def test_company_filter_keeps_only_authorized_collections_and_none_means_no_filter():
    items = [{"collection_id": "a"}, {"collection_id": "b"}]
    assert events.visible(items, {"a"}) == [{"collection_id": "a"}]
    assert events.visible(items, None) == items


def test_workflow_diffs_report_only_changed_watched_fields_and_steps():
    before = events.job_state({"document": {"initial_data": {"currency": "EUR", "sender": "A", "unwatched": 1}},
                               "APBookeeper_step_status": {"extract": 1, "validate": 0}})
    after = events.job_state({"document": {"initial_data": {"currency": "CHF", "unwatched": 2}},
                              "APBookeeper_step_status": {"extract": 2, "validate": 0, "book": 0}})
    assert events.invoice_changes(before, after) == {"currency": "CHF", "sender": None}
    assert events.step_changes(before, after) == {"extract": 2}
    assert events.job_state({"APBookeeper_step_status": "text, as upload_invoice_step documents"}).steps == {}
    new_job = events.job_state({"document": {"initial_data": {"invoiceReference": "INV-1"}}})
    assert events.invoice_changes(None, new_job) == {"invoiceReference": "INV-1"}


def test_workflow_cache_is_bounded():
    cache = events.WorkflowCache(max_jobs=3)
    state = events.job_state({})
    for job in "abcd":
        cache.put(job, state)
    assert list(cache.jobs) == ["b", "c", "d"]
    cache.put("b", state)  # a change makes a job recent again
    cache.put("e", state)
    assert list(cache.jobs) == ["d", "b", "e"]


def test_rtdb_mirror_applies_puts_and_patches_and_finds_new_children():
    mirror = apply_event({}, "put", "/", {"m1": {"text": "a"}})
    known = set(mirror)
    mirror = apply_event(mirror, "put", "/m2", {"text": "b"})
    mirror = apply_event(mirror, "patch", "/m1", {"read": True})
    mirror = apply_event(mirror, "put", "/m3/text", "c")
    assert mirror == {"m1": {"text": "a", "read": True}, "m2": {"text": "b"}, "m3": {"text": "c"}}
    assert new_children(known, mirror) == ["m2", "m3"]
    mirror = apply_event(mirror, "put", "/m3/text", None)  # an emptied child disappears, as in RTDB
    mirror = apply_event(mirror, "put", "/m2", None)
    assert mirror == {"m1": {"text": "a", "read": True}}
    assert apply_event(mirror, "put", "/", None) == {}


def test_chat_messages_are_the_last_ones_oldest_first_and_only_agent_messages_get_marked_read():
    mirror = {f"k{n:02d}": {"timestamp": f"2025-01-01T00:00:{n:02d}Z"} for n in range(60)}
    listed = events.chat_messages(mirror)
    assert len(listed) == events.CHAT_SYNC_MAX_MESSAGES and listed[-1]["id"] == "k59" and listed[0]["id"] == "k10"
    assert events.should_mark_read({"message_type": "CARD", "read": False})
    assert not events.should_mark_read({"message_type": "MESSAGE_PINNOKIO", "read": False})
    assert not events.should_mark_read({"message_type": "MESSAGE"})  # no read flag: leave it alone


def test_debounce_coalesces_a_burst_and_caps_the_delay():
    debounce = Debouncer(quiet_s=0.1, max_delay_s=1.0)
    first, due = debounce.request("k", now=0.0)
    assert due == pytest.approx(0.1)
    second, due = debounce.request("k", now=0.05)
    assert due == pytest.approx(0.1) and not debounce.fire("k", first) and debounce.fire("k", second)
    # Requests every 50 ms never pause: the timer is never pushed past 1 s after the first one.
    generation, due = debounce.request("k", now=10.0)
    for step in range(1, 30):
        generation, due = debounce.request("k", now=10.0 + step * 0.05)
    assert abs((10.0 + 29 * 0.05 + due) - 11.0) < 1e-9
    assert debounce.fire("k", generation) and not debounce.fire("k", generation)
