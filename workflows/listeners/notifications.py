"""``notifications``: the user's unread notifications (Firestore) → ``notif.sync``, filtered by company."""
from __future__ import annotations

from typing import Any

from google.cloud.firestore_v1 import FieldFilter

from core.integrations.firebase import get_firestore
from realtime.events import NOTIF_SYNC

from .. import events
from ..config import ListenersConfig
from ..firestore_targets import ListenTarget
from ..companies import Companies
from .base import ChangeHandler, ListenerHost, Sync, open_firestore

NOTIFICATIONS = "notifications"


class NotificationsListener:
    """The unread set, rebuilt from each stream's first snapshot and kept up to date by its changes."""

    kind = NOTIFICATIONS
    filtered_by_company = True

    def __init__(self, host: ListenerHost) -> None:
        self._host = host
        self.items: dict[str, dict[str, Any]] = {}  # doc id -> notification item
        self.ready = False

    @staticmethod
    def enabled(config: ListenersConfig) -> bool:
        return True

    def open(self, on_change: ChangeHandler) -> ListenTarget:
        unread = get_firestore().collection(f"clients/{self._host.uid}/notifications").where(
            filter=FieldFilter("read", "==", False)
        )
        return open_firestore(unread, on_change, self._host.ctx)

    def apply(self, stream: ListenTarget, docs: list, changes: list) -> None:
        if not stream.seeded:  # a (new) listener's first snapshot is the whole unread set
            stream.seeded = True
            self.items = {doc.id: events.notification_item(doc.to_dict() or {}, doc.id) for doc in docs}
        else:
            for change in changes:
                doc = change.document
                if change.type.name == "REMOVED":
                    self.items.pop(doc.id, None)
                else:
                    self.items[doc.id] = events.notification_item(doc.to_dict() or {}, doc.id)
        self.ready = True
        self._host.request_sync(self.kind)

    def sync_payload(self, companies: Companies) -> Sync:
        if not self.ready:
            return None
        return NOTIF_SYNC, events.sync_payload("notifications", events.visible(self.items.values(), companies))
