"""A seeded tenant mirroring a real one, for the dev stack (``manage.py seed_demo``) and the tests.

One client with 3 mandates (ERP, context, workflow parameters, function table), the 6 departments with journal
entries, 50 jobs (task manager documents with step counters and invoice data, notifications — some unread —,
internal messages, token usage), chat threads with messages in each mandate's space, direct messages, and the
global reference data (``settings_param``). Static content comes from fixtures/demo_tenant.json.

Idempotent: every id is derived from the uid and the fixture, documents are written with ``set`` (overwrite), and
RTDB data with one multi-path update of fixed keys, so a second run leaves the same data (messages a user added to
a demo thread survive). Firestore writes go in batches of 500.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from core.integrations.firebase import get_firestore
from core.integrations.rtdb import reference

from .defaults import FIXTURES_DIR, reference_defaults
from .journal import BOOKED_SOURCE, TO_DO_SOURCE
from .store import MAX_BATCH_WRITES, chunks, client_path, iso_utc, utc_now

JOB_COUNT = 50
UNREAD_EVERY = 3  # every third notification is unread
STEPS = ("DOCUMENT_EXTRACTION", "CONTACT_CHECK", "BOOKING", "ARCHIVE")


@dataclass
class DemoSummary:
    uid: str
    client_uuid: str
    mandate_paths: list[str]
    space_codes: list[str]
    jobs: int = 0
    notifications: int = 0
    unread_notifications: int = 0
    journal_entries: int = 0
    chat_threads: int = 0
    chat_messages: int = 0
    direct_messages: int = 0
    firestore_documents: int = 0
    job_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_fixture() -> dict[str, Any]:
    return json.loads((FIXTURES_DIR / "demo_tenant.json").read_text(encoding="utf-8"))


def space_code_for(uid: str, slug: str) -> str:
    """A per-user space code: two demo users never share RTDB chat spaces."""
    return f"{slug}_{hashlib.sha256(uid.encode()).hexdigest()[:10]}"


class _Writes:
    """Collects Firestore sets and commits them in batches of 500."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []

    def set(self, path: str, data: dict[str, Any]) -> None:
        self.items.append((path, data))

    def commit(self) -> int:
        db = get_firestore()
        for group in chunks(self.items, MAX_BATCH_WRITES):
            batch = db.batch()
            for path, data in group:
                batch.set(db.document(path), data)
            batch.commit()
        return len(self.items)


def build_demo_tenant(uid: str, *, now: dt.datetime | None = None, reference_data: bool = True) -> DemoSummary:
    """Write the demo tenant of ``uid`` (Firestore + RTDB) and return what was written."""
    fixture = load_fixture()
    now = now or utc_now()
    writes = _Writes()
    client = fixture["client"]
    client_doc = client_path(uid, "bo_clients", client["id"])
    mandates = [{**m, "path": f"{client_doc}/mandates/{m['id']}", "space": space_code_for(uid, m["slug"])}
                for m in fixture["mandates"]]
    summary = DemoSummary(uid=uid, client_uuid=client["client_uuid"], mandate_paths=[m["path"] for m in mandates],
                          space_codes=[m["space"] for m in mandates])

    _write_accounts(writes, uid, fixture, now)
    for mandate in mandates:
        _write_mandate(writes, mandate, now)
    departments = _write_departments(writes, uid, fixture["departments"])
    rtdb: dict[str, Any] = {}
    for index in range(JOB_COUNT):
        job_id = f"demo_job_{index + 1:03d}"
        _write_job(writes, rtdb, summary, uid, job_id, index, mandates[index % len(mandates)], fixture, departments, now)
    _write_chats(rtdb, summary, uid, mandates, fixture, now)
    _write_direct_messages(rtdb, summary, uid, mandates, fixture, now)
    if reference_data:
        _write_reference_data(writes, fixture)
    summary.firestore_documents = writes.commit()
    reference("/").update(rtdb)  # one atomic multi-path update
    return summary


def _write_accounts(writes: _Writes, uid: str, fixture: dict[str, Any], now: dt.datetime) -> None:
    user, client = fixture["user"], fixture["client"]
    writes.set(f"users/{uid}", {"uid": uid, "email": user["email"], "displayName": user["displayName"], "photoURL": ""})
    writes.set(f"clients/{uid}", {"client_email": user["email"], "client_name": user["displayName"], "created_at": now})
    writes.set(client_path(uid, "bo_clients", uid), {"client_name": user["displayName"], "created_at": now,
                                                     "client_uuid": f"client_{uid[:8]}"})
    writes.set(client_path(uid, "bo_clients", client["id"]), {
        key: client[key] for key in ("client_name", "client_uuid", "client_mail", "client_address", "client_phone",
                                     "drive_client_parent_id")} | {"created_at": now})


def _write_mandate(writes: _Writes, mandate: dict[str, Any], now: dt.datetime) -> None:
    path, slug = mandate["path"], mandate["slug"]
    writes.set(path, {
        "contact_space_name": mandate["contact_space_name"], "contact_space_id": mandate["space"],
        "legal_name": mandate["legal_name"], "base_currency": mandate["base_currency"], "isactive": True,
        "gl_accounting_erp": mandate["erp"], "ap_erp": mandate["erp"], "ar_erp": mandate["erp"],
        "bank_erp": mandate["erp"], "dms_type": "google_drive", "chat_type": "pinnokio",
        "communication_log_type": "pinnokio", "drive_space_parent_id": f"drive_{slug}",
        "input_drive_doc_id": f"drive_{slug}_input", "output_drive_doc_id": f"drive_{slug}_output",
        "main_doc_drive_id": f"drive_{slug}_main", "country": mandate["country"],
    })
    writes.set(f"{path}/erp/{mandate['erp']}", {
        "erp_type": mandate["erp"], "odoo_url": f"https://{slug}.odoo.example", "odoo_db": f"{slug}_prod",
        "odoo_username": f"bot@{slug}.example", "odoo_company_name": mandate["legal_name"],
    })
    writes.set(f"{path}/context/general_context", {
        "context_company_profile_report": f"{mandate['legal_name']} is a demo company based in {mandate['country']}.",
        "context_topic_q_a": {"0": {"target": "Activity", "questions": ["What do you sell?"], "tips": [],
                                    "is_done": True, "chat": ["We import and resell goods."]}},
    })
    writes.set(f"{path}/context/accounting_context", {
        "data": {"accounting_context_0": {"vat_regime": "effective", "fiscal_year_end": "12-31"},
                 "last_refresh": now.replace(tzinfo=None).isoformat()}})
    writes.set(f"{path}/context/coa_context", {"data": {"expenses": {
        "6000": {"account_number": "6000", "account_name": "Rent", "account_id": 60, "functions": ["expense"]},
        "6500": {"account_number": "6500", "account_name": "Office supplies", "account_id": 65, "functions": ["expense"]},
    }}})
    writes.set(f"{path}/setup/workflow_params", {
        "Apbookeeper_param": {"apbookeeper_approval_contact_creation": True, "apbookeeper_approval_required": False,
                              "apbookeeper_communication_method": "pinnokio"},
        "Router_param": {"router_approval_required": False, "router_automated_workflow": True,
                         "router_communication_method": "pinnokio"},
        "Banker_param": {"banker_approval_required": True, "banker_approval_thresholdworkflow": 1000,
                         "banker_communication_method": "pinnokio"},
    })
    writes.set(f"{path}/setup/function_table", reference_defaults()["function_table"])


def _write_departments(writes: _Writes, uid: str, names: list[str]) -> dict[str, str]:
    departments = {}
    for name in names:
        doc_id = f"dept_{name.lower()}"
        writes.set(client_path(uid, "klk_vision", doc_id), {"departement": name})
        departments[name] = doc_id
    return departments


def _write_job(
    writes: _Writes, rtdb: dict[str, Any], summary: DemoSummary, uid: str, job_id: str, index: int,
    mandate: dict[str, Any], fixture: dict[str, Any], departments: dict[str, str], now: dt.datetime,
) -> None:
    stamp = now - dt.timedelta(hours=index * 7)
    supplier = fixture["suppliers"][index % len(fixture["suppliers"])]
    status = fixture["job_statuses"][index % len(fixture["job_statuses"])]
    function = fixture["functions"][index % len(fixture["functions"])]
    file_name = f"{supplier.split()[0].lower()}_{stamp:%Y%m%d}_{index + 1:03d}.pdf"
    amount = round(80 + (index * 37.35) % 2400, 2)
    invoice = {
        "invoiceReference": f"INV-{stamp:%Y}-{index + 1:04d}", "sender": supplier, "recipient": mandate["legal_name"],
        "invoiceDescription": "Services and supplies", "totalAmountDueVATExcluded": round(amount / 1.081, 2),
        "totalAmountDueVATIncluded": amount, "VATAmount": round(amount - amount / 1.081, 2), "VATPercentages": 8.1,
        "currency": mandate["base_currency"], "invoiceDate": f"{stamp:%Y-%m-%d}",
        "dueDate": f"{stamp + dt.timedelta(days=30):%Y-%m-%d}", "sender_country": mandate["country"],
        "recipientAddress": "", "account_number": "6500", "account_name": "Office supplies",
    }
    done_steps = {"completed": 4, "in_progress": 2, "error": 1}.get(status, 0)
    tasks = client_path(uid, "task_manager", job_id)
    writes.set(tasks, {
        "APBookeeper_step_status": {step: int(i < done_steps) for i, step in enumerate(STEPS)},
        "document": {"initial_data": invoice},
        "Document_information": {"file_name": file_name, "uri_file_link": f"https://drive.example/{job_id}"},
        "mandate_path": mandate["path"], "job_id": job_id, "status": status, "created_at": stamp,
    })
    notification = {
        "job_id": job_id, "file_id": f"file_{job_id}", "batch_id": f"batch_{index // 10 + 1:02d}",
        "file_name": file_name, "status": status, "read": index % UNREAD_EVERY != 0,
        "collection_id": mandate["space"], "collection_name": mandate["contact_space_name"],
        "function_name": function, "timestamp": stamp,
        "additional_info": json.dumps({"error_message": "Unreadable VAT number"}) if status == "error" else "",
    }
    writes.set(client_path(uid, "notifications", job_id), notification)
    department = departments["APbookeeper" if function == "APbookeeper" else function]
    source = BOOKED_SOURCE if status == "completed" else TO_DO_SOURCE
    journal_status = {"completed": "close", "to_process": "to_process", "pending": "pending"}.get(status, "on_process")
    writes.set(client_path(uid, "klk_vision", department, "journal", f"entry_{job_id}"), {
        "job_id": job_id, "mandat_id": mandate["space"], "source": source, "status": journal_status,
        "file_name": file_name, "timestamp": stamp, "pinnokio_func": function,
    })
    if index % 5 == 0:
        writes.set(f"{tasks}/internal_message/messages", {"1": {
            "datetime": stamp, "message": "Supplier contact created", "send_from": "APbookeeper",
            "sent_to": {"service": "Router", "motivation": "new supplier"}}})
        writes.set(client_path(uid, "token_usage", job_id), {"entries": [
            {"job_id": job_id, "provider_name": "openai", "total_input_tokens": 1200 + index, "total_output_tokens": 300}]})
    if index < 6:  # the most recent jobs have a job chat
        rtdb[f"{mandate['space']}/job_chats/{job_id}/thread_name"] = file_name
        rtdb[f"{mandate['space']}/job_chats/{job_id}/thread_key"] = job_id
        rtdb[f"{mandate['space']}/job_chats/{job_id}/chat_mode"] = "apbookeeper_chat"
        rtdb[f"{mandate['space']}/job_chats/{job_id}/created_by"] = uid
        rtdb[f"{mandate['space']}/job_chats/{job_id}/created_at"] = iso_utc(stamp)
        rtdb[f"{mandate['space']}/job_chats/{job_id}/messages/-Ademo{index:04d}a"] = _message(
            "Extraction done, please confirm the VAT amount.", "pinnokio", "MESSAGE_PINNOKIO", stamp)
        summary.chat_threads += 1
        summary.chat_messages += 1
    summary.jobs += 1
    summary.notifications += 1
    summary.unread_notifications += int(not notification["read"])
    summary.journal_entries += 1
    summary.job_ids.append(job_id)


def _message(content: str, sender: str, message_type: str, stamp: dt.datetime) -> dict[str, Any]:
    return {"content": content, "sender_id": sender, "timestamp": iso_utc(stamp), "message_type": message_type,
            "read": True}


def _write_chats(
    rtdb: dict[str, Any], summary: DemoSummary, uid: str, mandates: list[dict[str, Any]], fixture: dict[str, Any],
    now: dt.datetime,
) -> None:
    for mandate in mandates:
        for number, name in enumerate(fixture["chat_threads"]):
            key = f"demo_{mandate['slug']}_{number + 1}"
            base = f"{mandate['space']}/chats/{key}"
            created = now - dt.timedelta(days=7 - number)
            rtdb.update({f"{base}/thread_name": name, f"{base}/thread_key": key, f"{base}/chat_mode": "general_chat",
                         f"{base}/created_by": uid, f"{base}/created_at": iso_utc(created)})
            lines = [(uid, "MESSAGE", f"Can you check the {name.lower()} for {mandate['legal_name']}?"),
                     ("pinnokio", "MESSAGE_PINNOKIO", "Sure — I found 3 open items, here is the summary."),
                     (uid, "MESSAGE", "Thanks, please book them.")]
            for position, (sender, kind, text) in enumerate(lines):
                stamp = created + dt.timedelta(minutes=position * 3)
                rtdb[f"{base}/messages/-Ademo{number}{position:03d}"] = _message(text, sender, kind, stamp)
            summary.chat_threads += 1
            summary.chat_messages += len(lines)


def _write_direct_messages(
    rtdb: dict[str, Any], summary: DemoSummary, uid: str, mandates: list[dict[str, Any]], fixture: dict[str, Any],
    now: dt.datetime,
) -> None:
    for number, message in enumerate(fixture["direct_messages"]):
        mandate = mandates[number % len(mandates)]
        rtdb[f"clients/{uid}/direct_message_notif/-Ademo{number:04d}"] = {
            **message, "job_id": f"demo_job_{number + 1:03d}", "file_id": f"file_demo_job_{number + 1:03d}",
            "collection_id": mandate["space"], "additional_info": "", "sender_id": "pinnokio",
            "timestamp": iso_utc(now - dt.timedelta(minutes=30 * (len(fixture["direct_messages"]) - number))),
        }
        summary.direct_messages += 1


def _write_reference_data(writes: _Writes, fixture: dict[str, Any]) -> None:
    defaults = reference_defaults()
    for document, field_name in (("dms_type", "dms_types"), ("erp_type", "erp_types"), ("chat_type", "chat_types"),
                                 ("currencies", "currencies"), ("communication_type", "communication_types")):
        writes.set(f"settings_param/{document}", {field_name: defaults[field_name]})
    for language, data in fixture["languages"].items():
        writes.set(f"settings_param/languages/items/{language}", data)
    for country, data in fixture["countries"].items():
        writes.set(f"settings_param/companies_legal_form/countries/{country}", {"name": country, **data})
