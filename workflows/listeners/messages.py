"""``messages``: the user's direct messages (Realtime DB) → ``msg.new`` per new message, then ``msg.sync``."""
from __future__ import annotations

from typing import Any

import structlog

from realtime.events import MSG_NEW, MSG_SYNC

from .. import events
from ..config import ListenersConfig
from ..rtdb_streams import RtdbStream, apply_event, new_children
from ..companies import Companies
from .base import ChangeHandler, CompaniesUnavailable, ListenerHost, Sync, authorized_companies

log = structlog.get_logger(__name__)

MESSAGES = "messages"


class MessagesListener:
    """A mirror of ``direct_message_notif``; a replacement stream's first ``put`` is diffed against it, so only
    messages that really arrived meanwhile are announced."""

    kind = MESSAGES
    filtered_by_company = True

    def __init__(self, host: ListenerHost) -> None:
        self._host = host
        self.mirror: dict[str, Any] = {}
        self.ready = False

    @staticmethod
    def enabled(config: ListenersConfig) -> bool:
        return True

    def open(self, on_change: ChangeHandler) -> RtdbStream:
        return RtdbStream(f"clients/{self._host.uid}/direct_message_notif", on_change, self._host.ctx.rtdb)

    def apply(self, stream: RtdbStream, event_type: str, path: str, data: Any) -> None:
        known = set(self.mirror) if self.ready else None
        self.mirror = apply_event(self.mirror, event_type, path, data)
        self.ready = True
        if known is not None:  # the first snapshot after attach only syncs: nothing in it is "new" to the user
            added = new_children(known, self.mirror)
            if added:
                self._announce(added)
        self._host.request_sync(self.kind)

    def _announce(self, keys: list[str]) -> None:
        try:
            companies = authorized_companies(self._host.uid)
        except CompaniesUnavailable:
            # Without the user's companies nothing is announced; the sync that follows is retried until it can
            # be filtered, and it carries these messages.
            log.warning("authorized_companies_unavailable", uid=self._host.uid)
            return
        items = [events.message_item(self.mirror[key], key) for key in keys]
        for item in events.visible(items, companies):
            self._host.publish(MSG_NEW, {"message": item})

    def sync_payload(self, companies: Companies) -> Sync:
        if not self.ready:
            return None
        items = [events.message_item(value, key) for key, value in self.mirror.items() if isinstance(value, dict)]
        return MSG_SYNC, events.sync_payload("messages", events.visible(items, companies))
