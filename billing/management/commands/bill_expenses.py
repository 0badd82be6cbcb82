"""``manage.py bill_expenses``: debit every unbilled expense from its user's balance.

Workers record usage as ``{mandate_path}/billing/topping/expenses/{job_id}`` with ``billed: false`` and
``total_sales_price``. The original billed them as a side effect of reading the balance; here this command does,
each expense in its own Firestore transaction with the balance (safe to run concurrently or again). Run it on a
schedule (e.g. every minute). In production the ``expenses`` collection group needs a single-field index on
``billed`` (Firestore does not create collection-group indexes by default).
"""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandParser

from billing.services import bill_unbilled_expenses


class Command(BaseCommand):
    help = "Debit every unbilled expense (billed == false) from its user's balance."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", dest="as_json", help="print the summary as one JSON object")

    def handle(self, *args, as_json: bool, **options) -> None:
        run = bill_unbilled_expenses()
        if as_json:
            self.stdout.write(json.dumps({"debited": run.debited, "skipped": run.skipped}, sort_keys=True))
            return
        skipped = ", ".join(f"{count} {reason}" for reason, count in sorted(run.skipped.items())) or "none"
        self.stdout.write(self.style.SUCCESS(f"Debited {run.debited} expenses; skipped: {skipped}."))
