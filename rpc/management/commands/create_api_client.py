"""``manage.py create_api_client NAME --namespaces A,B [--users U1,U2] [--companies C1] [--json]``: create an API client and print its token once."""
from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from rpc.services import api_client_create


class Command(BaseCommand):
    help = "Create an API client for POST /rpc and print its token (shown once; only its SHA-256 is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="unique name, e.g. reflex-prod")
        parser.add_argument("--namespaces", required=True,
                            help="comma-separated namespaces it may call, e.g. REGISTRY,FIREBASE_MANAGEMENT, or *")
        parser.add_argument("--users", default="",
                            help="comma-separated user ids it may act for (default: any user)")
        parser.add_argument("--companies", default="",
                            help="comma-separated companies (space ids) whose users it may act for (default: any)")
        parser.add_argument("--json", action="store_true", help="print one JSON object (for scripts)")

    def handle(self, *args: Any, **options: Any) -> None:
        namespaces = [name.strip() for name in options["namespaces"].split(",") if name.strip()]
        if not namespaces:
            raise CommandError("--namespaces needs at least one namespace (or *)")
        try:
            users = [uid.strip() for uid in options["users"].split(",") if uid.strip()]
            companies = [company.strip() for company in options["companies"].split(",") if company.strip()]
            client, token = api_client_create(name=options["name"], namespaces=namespaces, bound_users=users,
                                              bound_companies=companies)
        except ValidationError as exc:
            raise CommandError("; ".join(f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items()))
        if options["json"]:
            self.stdout.write(json.dumps({
                "id": client.pk, "name": client.name, "namespaces": client.namespaces, "bound_users": client.bound_users,
                "bound_companies": client.bound_companies,
                "token_prefix": client.token_prefix, "token": token,
            }))
            return
        self.stdout.write(f"Created API client {client.name!r} (namespaces: {', '.join(client.namespaces)}).")
        self.stdout.write("Token (shown once, store it in your secret manager now):")
        self.stdout.write(token)
