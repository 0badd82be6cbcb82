"""The kinds of listener a user has: one module per kind, and the table that UserListeners dispatches through.

A new per-user kind is one module (a class that fits ``Listener`` in base.py, built as ``cls(host)``, with
``enabled(config)``) plus one line in ``USER_KINDS``. Chat listeners (chat.py) are not in the table: they follow the
threads the user's sockets opened.
"""
from __future__ import annotations

from .base import UserKind
from .chat import is_chat_kind
from .jobs import WORKFLOW, JobsListener
from .messages import MESSAGES, MessagesListener
from .notifications import NOTIFICATIONS, NotificationsListener

# kind -> class, in opening order: Firestore first (opening its streams does not block, and their first snapshots
# are the slowest to come); the Realtime DB open (an HTTP request) then overlaps with them.
USER_KINDS: dict[str, UserKind] = {
    NOTIFICATIONS: NotificationsListener,
    WORKFLOW: JobsListener,
    MESSAGES: MessagesListener,
}


def metric_kind(kind: str) -> str:
    """The ``kind`` label of the listener metrics: every chat thread counts as "chat"."""
    return "chat" if is_chat_kind(kind) else kind
