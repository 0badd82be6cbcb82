"""``manage.py chroma_migrate NAME...``: migrate collections of the original (another embedding function) in the
foreground, as long jobs (chroma/migration.py), with a progress bar or ``--json``."""
from __future__ import annotations

import json
import threading
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from chroma.migration import start_migration
from core.errors import RpcError
from core.serialization import json_default
from jobs.runner import DEFAULT_LEASE_TTL_S, JobRunner
from jobs.selectors import get_job
from jobs.types import DONE, Job

_POLL_S = 0.2  # how often the bar reads the job's state (Redis); the job itself runs in a thread of this process
_COLUMNS = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(), TextColumn("{task.fields[step]}"))


class Command(BaseCommand):
    help = (
        "Re-embed Chroma collections built by another embedding function (e.g. the original service's OpenAI "
        "vectors) with the bundled model. Each runs as a long job: the collection is copied, verified, then swapped "
        "in; the old one is kept as NAME__pre_migration unless --drop-old. Interrupted, it resumes when run again "
        "(or under manage.py run_jobs)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="+", metavar="NAME", help="collection names")
        parser.add_argument("--drop-old", action="store_true", help="delete NAME__pre_migration once swapped")
        parser.add_argument("--json", action="store_true", help="print the jobs as JSON instead of a progress bar")
        parser.add_argument("--user", default="operator",
                            help="the user the jobs belong to (their progress events go to user:<user>)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            jobs = [start_migration(uid=options["user"], collection_name=name, drop_old=options["drop_old"])
                    for name in options["names"]]
        except RpcError as error:
            raise CommandError(f"{error.code}: {error.message}") from None
        runner = JobRunner(threads=0, lease_ttl_s=DEFAULT_LEASE_TTL_S).start()
        try:
            finished = [self._follow(runner, job, show_bar=not options["json"]) for job in jobs]
        finally:
            runner.stop()
        if options["json"]:
            self.stdout.write(json.dumps([job.as_dict() for job in finished], default=json_default, indent=2))
        else:
            for job in finished:
                result = job.result or {}
                self.stdout.write(f"{job.params['collection_name']}: {job.status}"
                                  + (f" ({result.get('document_count')} documents)" if job.status == DONE else "")
                                  + (f": {job.error}" if job.error else ""))
        if any(job.status != DONE for job in finished):
            raise CommandError("some migrations did not finish")

    def _follow(self, runner: JobRunner, job: Job, *, show_bar: bool) -> Job:
        """Run the job here (unless a run_jobs process already took it) and show its progress until it ends."""
        worker = threading.Thread(target=runner.run_job, args=(job.uid, job.job_id), daemon=True)
        worker.start()
        with Progress(*_COLUMNS, console=Console(stderr=True), disable=not show_bar) as bar:
            task = bar.add_task(job.params["collection_name"], total=100, step=job.step)
            while not job.done:
                time.sleep(_POLL_S)
                job = get_job(uid=job.uid, job_id=job.job_id)
                bar.update(task, completed=job.progress, step=job.step)
        worker.join()
        return job
