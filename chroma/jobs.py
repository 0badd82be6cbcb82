"""Chroma's long jobs (discovered by jobs.registry)."""
from __future__ import annotations

from typing import Any

from jobs.registry import job
from jobs.runner import JobContext

from . import migration


@job(migration.JOB_NAME, resumable=True)
def migrate_collection(ctx: JobContext) -> dict[str, Any]:
    """Re-embed a collection built by another embedding function with the bundled model (chroma/migration.py)."""
    return migration.migrate(
        collection_name=ctx.params["collection_name"], drop_old=bool(ctx.params.get("drop_old")),
        report=ctx.progress, checkpoint=ctx.checkpoint,
    )
