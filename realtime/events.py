"""Every event type the gateway pushes, in one catalogue (the contract's names; the Reflex app switches on them).

Producers import the name from here, never spell it: ``notif.*`` / ``msg.*`` / ``workflow.*`` / ``balance.*`` / ``service.*`` go to
``user:{uid}``, ``chat.*`` with a thread to that thread's channel (realtime/channels.py). ``recovery.failed`` and
``pong`` are written by the socket itself (realtime/consumers.py).
"""
from __future__ import annotations

NOTIF_SYNC = "notif.sync"
NOTIF_JOB_UPDATED = "notif.job_updated"
MSG_NEW = "msg.new"
MSG_SYNC = "msg.sync"
CHAT_SYNC = "chat.sync"
CHAT_MESSAGE = "chat.message"
WORKFLOW_INVOICE_UPDATE = "workflow.invoice_update"
WORKFLOW_STEP_UPDATE = "workflow.step_update"
BALANCE_UPDATED = "balance.updated"
SERVICE_PROGRESS_UPDATE = "service.progress_update"
RECOVERY_FAILED = "recovery.failed"
PONG = "pong"

CHAT_PREFIX = "chat."
