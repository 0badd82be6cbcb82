"""What the listeners publish: item formats, sync payloads and workflow change detection (pure functions).

Shapes follow the contract (§2) and the original service (§5.5): notification and message items keep the original
keys, ``additional_info`` is always a string (a stored map becomes JSON, where the original sent Python ``str()``),
and timestamps are ISO-8601 UTC with ``Z``.
"""
from __future__ import annotations

import datetime as dt
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from core.serialization import iso_utc, json_default

# A sync carries the newest items only (the original sent every unread item, unbounded); ``count`` stays the total.
SYNC_MAX_ITEMS = 200
CHAT_SYNC_MAX_MESSAGES = 50

# The WorkflowListener's fields of task_manager/{job}.document.initial_data (original §5.4).
WATCHED_INVOICE_FIELDS = (
    "invoiceReference", "recipient", "invoiceDescription", "totalAmountDueVATExcluded", "totalAmountDueVATIncluded",
    "VATAmount", "recipientAddress", "dueDate", "sender", "invoiceDate", "currency", "VATPercentages",
    "sender_country", "account_number", "account_name",
)
STEP_STATUS_FIELD = "APBookeeper_step_status"
# Chat messages the original client marked read once delivered (listen_realtime_channel); nothing else is touched.
MARK_READ_MESSAGE_TYPES = frozenset({"MESSAGE", "CARD", "TOOL", "CMMD"})


def now_iso() -> str:
    return iso_utc(dt.datetime.now(dt.timezone.utc))


def timestamp_text(value: Any) -> str:
    """Firestore timestamps and datetimes as ISO UTC; text passes through (RTDB stores text); anything else ""."""
    if isinstance(value, dt.datetime):
        return iso_utc(value)
    if isinstance(value, str):
        return value
    return ""


def additional_info_text(value: Any) -> str:
    if value is None:
        return "{}"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=json_default)


def info_message(additional_info: Any) -> str:
    """The ``error_message`` (else ``message``) of additional_info, stored as a map or as JSON text."""
    info = additional_info
    if isinstance(info, str):
        try:
            info = json.loads(info) if info else {}
        except ValueError:
            return ""
    if not isinstance(info, dict):
        return ""
    return str(info.get("error_message") or info.get("message") or "")


def _common_item(data: Mapping[str, Any], doc_id: str) -> dict[str, Any]:
    file_name = data.get("file_name") or "Document"
    status = data.get("status") or "info"
    job_id = data.get("job_id") or ""
    return {
        "message": f"{file_name} - {status}",
        "file_name": file_name,
        "collection_id": data.get("collection_id", ""),
        "collection_name": data.get("collection_name", ""),
        "url": f"/edit_form/{job_id}",
        "status": status,
        "doc_id": doc_id,
        "job_id": job_id,
        "file_id": data.get("file_id", ""),
        "function_name": data.get("function_name", ""),
        "timestamp": timestamp_text(data.get("timestamp")),
        "additional_info": additional_info_text(data.get("additional_info")),
    }


def notification_item(data: Mapping[str, Any], doc_id: str) -> dict[str, Any]:
    item = _common_item(data, doc_id)
    item["read"] = bool(data.get("read", False))
    item["info_message"] = info_message(data.get("additional_info"))
    return item


def message_item(data: Mapping[str, Any], message_id: str) -> dict[str, Any]:
    return _common_item(data, message_id)


def visible(items: Iterable[dict[str, Any]], companies: set[str] | None) -> list[dict[str, Any]]:
    """Keep the items of the user's authorized companies (by ``collection_id``); ``None`` means no filter."""
    if companies is None:
        return list(items)
    return [item for item in items if item.get("collection_id") in companies]


def sync_payload(key: str, items: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """``{key: newest items first (at most SYNC_MAX_ITEMS), count: total, timestamp}``."""
    ordered = sorted(items, key=lambda item: item["timestamp"], reverse=True)
    return {key: ordered[:SYNC_MAX_ITEMS], "count": len(ordered), "timestamp": now_iso()}


def chat_messages(mirror: Mapping[str, Any], limit: int = CHAT_SYNC_MAX_MESSAGES) -> list[dict[str, Any]]:
    """The last ``limit`` messages of a thread as [{id, ...fields}], oldest first (as get_channel_messages)."""
    messages = [{"id": key, **value} for key, value in mirror.items() if isinstance(value, dict)]
    messages.sort(key=lambda message: (str(message.get("timestamp", "")), message["id"]))
    return messages[-limit:]


def should_mark_read(message: Mapping[str, Any]) -> bool:
    return message.get("message_type") in MARK_READ_MESSAGE_TYPES and message.get("read", True) is False


# --- WorkflowListener change detection ----------------------------------------------------------------------------
@dataclass(frozen=True)
class JobState:
    invoice: dict[str, Any]
    steps: dict[str, Any]


def job_state(data: Mapping[str, Any]) -> JobState:
    document = data.get("document")
    initial = document.get("initial_data") if isinstance(document, dict) else None
    initial = initial if isinstance(initial, dict) else {}
    steps = data.get(STEP_STATUS_FIELD)
    # The original crashed on a string here (``.items()``); a non-map counts as "no steps".
    steps = dict(steps) if isinstance(steps, dict) else {}
    return JobState({name: initial.get(name) for name in WATCHED_INVOICE_FIELDS}, steps)


def invoice_changes(before: JobState | None, after: JobState) -> dict[str, Any]:
    """Watched fields whose value differs; a field that disappeared is reported as None."""
    old = before.invoice if before else {}
    return {name: after.invoice[name] for name in WATCHED_INVOICE_FIELDS if old.get(name) != after.invoice[name]}


def step_changes(before: JobState | None, after: JobState) -> dict[str, Any]:
    """Steps whose counter changed (a new step is compared with 0); removed steps are not reported (as before)."""
    old = before.steps if before else {}
    return {step: count for step, count in after.steps.items() if old.get(step, 0) != count}


@dataclass
class WorkflowCache:
    """The last published state of each job of one user, bounded (least recently changed jobs are forgotten first).

    A forgotten job that changes again is compared with an empty state, so its watched fields are all reported once.
    """

    max_jobs: int = 5000
    jobs: "OrderedDict[str, JobState]" = field(default_factory=OrderedDict)

    def __len__(self) -> int:
        return len(self.jobs)

    def get(self, job_id: str) -> JobState | None:
        return self.jobs.get(job_id)

    def put(self, job_id: str, state: JobState) -> None:
        self.jobs[job_id] = state
        self.jobs.move_to_end(job_id)
        while len(self.jobs) > self.max_jobs:
            self.jobs.popitem(last=False)

    def forget(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)

    def keep_only(self, job_ids: set[str]) -> None:
        for job_id in [job_id for job_id in self.jobs if job_id not in job_ids]:
            del self.jobs[job_id]
