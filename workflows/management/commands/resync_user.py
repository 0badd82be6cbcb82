"""``manage.py resync_user <uid>``: make the listeners worker re-send that user's notif.sync and msg.sync."""
from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from workflows.services import request_resync


class Command(BaseCommand):
    help = (
        "Ask the listeners worker that holds <uid> to publish a fresh notif.sync and msg.sync for it (use after a "
        "client missed events, or to check the pipeline end to end). Exits with status 1 when no worker has "
        "listeners attached for that user."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("uid", help="The user id whose notifications and messages to re-sync.")
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print the outcome as one JSON object.")

    def handle(self, *args: Any, uid: str, as_json: bool, **options: Any) -> None:
        requested = request_resync(uid=uid)
        if as_json:
            self.stdout.write(json.dumps({"uid": uid, "resync_requested": requested}))
        elif requested:
            self.stdout.write(f"Re-sync requested for {uid}: notif.sync and msg.sync will be published.")
        if not requested:
            raise CommandError(f"no listeners are attached for {uid}; nothing to re-sync (is the user online?)")
