"""``manage.py seed_demo [--uid UID] [--json]``: write the demo tenant so a new user sees real data.

Idempotent (re-running rewrites the same documents). Needs Firestore and the Realtime Database reachable — the dev
stack's emulator and stand-in, or the project the credentials point at (it refuses to run in PROD mode).
"""
from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from firebase_data.demo_tenant import JOB_COUNT, build_demo_tenant
from core.errors import InvalidArgs
from rpc.types import Identifier


class Command(BaseCommand):
    help = f"Seed a demo tenant (client, 3 mandates, {JOB_COUNT} jobs, notifications, chats) for one user id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--uid", default="demo_user", help="Firebase uid to seed (default: demo_user)")
        parser.add_argument("--json", action="store_true", dest="as_json", help="print the summary as one JSON object")
        parser.add_argument("--skip-reference-data", action="store_true",
                            help="leave settings_param (currencies, countries, types…) untouched")

    def handle(self, *args, uid: str, as_json: bool, skip_reference_data: bool, **options) -> None:
        if settings.IS_PROD:
            raise CommandError("seed_demo writes demo data; it does not run with GATEWAY_MODE=PROD")
        try:
            Identifier(128).check("uid", uid)
        except InvalidArgs as exc:
            raise CommandError(exc.message) from None
        summary = build_demo_tenant(uid, reference_data=not skip_reference_data)
        if as_json:
            self.stdout.write(json.dumps(summary.as_dict(), sort_keys=True))
            return
        self.stdout.write(self.style.SUCCESS(
            f"Seeded {uid}: {len(summary.mandate_paths)} mandates, {summary.jobs} jobs, "
            f"{summary.notifications} notifications ({summary.unread_notifications} unread), "
            f"{summary.chat_threads} chat threads, {summary.direct_messages} direct messages, "
            f"{summary.firestore_documents} Firestore documents."
        ))
