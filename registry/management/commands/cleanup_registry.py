"""``manage.py cleanup_registry``: expire sessions past their TTL, drop stale presence and orphan registrations."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from registry.cleanup import cleanup_registry, plan_cleanup


class Command(BaseCommand):
    help = (
        "Bring the session registry, presence and Chroma registrations into agreement: mark sessions past their TTL "
        "expired (leaving their presence), take users whose members all expired offline, leave presence members of "
        "sessions that ended, unregister Chroma registrations held by ended sessions, and delete ended sessions "
        "older than --retention-days. Safe to run at any time and as often as wanted (no keyspace scans)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--retention-days", type=float, default=7.0,
            help="Keep closed/expired session rows this long, for the admin (default 7).",
        )
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print the report as one JSON object.")
        parser.add_argument(
            "--dry-run", action="store_true",
            help="Report what would be done now, and change nothing (Redis and the database are only read).",
        )

    def handle(self, *args: Any, retention_days: float, as_json: bool, dry_run: bool, **options: Any) -> None:
        retention = dt.timedelta(days=retention_days)
        report = (plan_cleanup if dry_run else cleanup_registry)(retention=retention).as_dict()
        if as_json:
            self.stdout.write(json.dumps({**report, "dry_run": True} if dry_run else report, sort_keys=True))
            return
        if dry_run:
            self.stdout.write("Dry run: nothing was changed. A run now would report:")
        for name, count in report.items():
            self.stdout.write(f"{name.replace('_', ' ')}: {count}")
