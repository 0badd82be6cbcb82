"""``manage.py chroma_stats``: the Chroma backend, its collections with document counts, and live registrations."""
from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chroma.selectors import chroma_stats
from core.errors import RpcError


class Command(BaseCommand):
    help = (
        "Show the Chroma backend (embedded path or server URL), every collection of the configured tenant/database "
        "with its document count and recorded embedding function, and the live collection registrations."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print one JSON object instead of a table.")
        parser.add_argument(
            "--limit", type=int, default=1000, help="Show at most this many registrations (default 1000)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            stats = chroma_stats(registrations_limit=options["limit"])
        except RpcError as error:  # UNAVAILABLE: the server is down; say so instead of a traceback
            raise CommandError(f"{error.code}: {error.message}") from None
        if options["json"]:
            self.stdout.write(json.dumps(stats, indent=2, sort_keys=True))
            return
        self._print_table(stats)

    def _print_table(self, stats: dict[str, Any]) -> None:
        backend = stats["backend"]
        self.stdout.write(f"Chroma ({backend['mode']}): {backend.get('url') or backend.get('path')}")
        self.stdout.write(
            f"{stats['collection_count']} collection(s), {stats['document_count']} document(s); "
            f"{stats['registration_count']} live registration(s)"
        )
        if stats["collections"]:
            self.stdout.write("")
            width = max(len(c["name"]) for c in stats["collections"])
            self.stdout.write(f"{'collection':<{width}}  {'documents':>9}  embedding function")
            for collection in stats["collections"]:
                self.stdout.write(
                    f"{collection['name']:<{width}}  {collection['document_count']:>9}  "
                    f"{collection['embedding_function'] or '-'}"
                )
        if stats["registrations"]:
            self.stdout.write("")
            self.stdout.write("user  collection  session  last heartbeat  expires")
            for registration in stats["registrations"]:
                self.stdout.write(
                    f"{registration['user_id']}  {registration['collection_name']}  {registration['session_id']}  "
                    f"{registration['last_heartbeat']}  {registration['expires_at']}"
                )
