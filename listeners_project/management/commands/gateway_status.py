"""``manage.py gateway_status``: a human summary of the live gateway (the admin dashboard, in a terminal)."""
from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.serializers.json import DjangoJSONEncoder

from listeners_project.dashboard import gateway_snapshot


def _count(n: int, word: str) -> str:
    """``1 user``, ``4 users`` (the dashboard's plurals; issue 19: "4 users on 1 workers")."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def _shown(value: Any) -> str:
    return "unknown (Redis unreachable)" if value is None else str(value)


class Command(BaseCommand):
    help = (
        "Summarise the live gateway: users online, open sockets, sessions, listeners per kind and worker, Chroma "
        "registrations, events and RPC calls/errors over the last minute, and the health of Redis, Firestore, the "
        "Realtime DB and Chroma. Exits with status 1 when a backend is unhealthy."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="Print the snapshot as one JSON object."
        )

    def handle(self, *args: Any, as_json: bool, **options: Any) -> None:
        snapshot = gateway_snapshot()
        if as_json:
            self.stdout.write(json.dumps(snapshot, cls=DjangoJSONEncoder, sort_keys=True))
        else:
            self.stdout.write("\n".join(self._lines(snapshot)))
        unhealthy = sorted(name for name, state in snapshot["health"].items() if state != "ok")
        if unhealthy:
            raise CommandError(f"unhealthy backends: {', '.join(unhealthy)}")

    @staticmethod
    def _lines(snapshot: dict[str, Any]) -> list[str]:
        sessions, listeners, per_minute = snapshot["sessions"], snapshot["listeners"], snapshot["per_minute"]
        kinds = ", ".join(f"{kind} {count}" for kind, count in listeners["by_kind"].items()) or "none"
        workers = ", ".join(f"{worker} ({_count(count, 'user')})" for worker, count in listeners["by_worker"].items()) \
            or "none"
        health = ", ".join(f"{name} {state}" for name, state in snapshot["health"].items())
        return [
            f"Gateway status at {snapshot['generated_at']:%Y-%m-%d %H:%M:%S} UTC",
            f"  users online          {_shown(snapshot['users_online'])}",
            f"  open sockets          {_shown(snapshot['sockets'])}",
            f"  sessions              {sessions['online']} online, {sessions['expired']} expired, "
            f"{sessions['closed']} closed",
            f"  listeners             {_count(listeners['users'], 'user')} on {_count(listeners['workers'], 'worker')};"
            f" by kind: {kinds}",
            f"  workers               {workers}",
            f"  chroma registrations  {_shown(snapshot['chroma_registrations'])}",
            f"  last minute           {_shown(per_minute['events'])} events, "
            f"{_shown(per_minute['rpc_calls'])} RPC calls, {_shown(per_minute['rpc_errors'])} RPC errors",
            f"  backends              {health}",
        ]
