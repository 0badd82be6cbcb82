"""A job as read from its Redis hash (jobs/store.py writes it)."""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

QUEUED, RUNNING, DONE, ERROR, CANCELLED = "queued", "running", "done", "error", "cancelled"
FINAL_STATUSES = frozenset({DONE, ERROR, CANCELLED})


def _time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(int(value) / 1000, tz=dt.timezone.utc) if value else None


def _json(value: str | None) -> Any:
    return json.loads(value) if value else None


@dataclass(frozen=True)
class Job:
    job_id: str
    uid: str
    name: str
    status: str
    progress: int
    step: str
    data: dict[str, Any] | None
    error: str | None
    result: dict[str, Any] | None
    params: dict[str, Any]
    checkpoint: dict[str, Any] | None
    attempts: int
    cancel_requested: bool
    runner: str
    created_at: dt.datetime | None
    started_at: dt.datetime | None
    updated_at: dt.datetime | None
    finished_at: dt.datetime | None

    @classmethod
    def from_hash(cls, fields: dict[bytes, bytes]) -> Job:
        text = {key.decode(): value.decode() for key, value in fields.items()}
        return cls(
            job_id=text["job_id"], uid=text["uid"], name=text["name"], status=text["status"],
            progress=int(text.get("progress") or 0), step=text.get("step", ""), data=_json(text.get("data")),
            error=text.get("error") or None, result=_json(text.get("result")), params=_json(text.get("params")) or {},
            checkpoint=_json(text.get("checkpoint")), attempts=int(text.get("attempts") or 0),
            cancel_requested=text.get("cancel") == "1", runner=text.get("runner", ""),
            created_at=_time(text.get("created_at")), started_at=_time(text.get("started_at")),
            updated_at=_time(text.get("updated_at")), finished_at=_time(text.get("finished_at")),
        )

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATUSES

    def event_payload(self) -> dict[str, Any]:
        """``service.progress_update``: the contract's job_id, progress, status, data plus the issue's step, done, error."""
        return {
            "job_id": self.job_id, "progress": self.progress, "status": self.status, "step": self.step,
            "done": self.done, "error": self.error, "data": self.data,
        }

    def as_dict(self) -> dict[str, Any]:
        """What ``REGISTRY.get_job`` returns (params and checkpoint are the runner's business, never shown)."""
        return {
            **self.event_payload(), "name": self.name, "result": self.result, "attempts": self.attempts,
            "cancel_requested": self.cancel_requested, "created_at": self.created_at, "started_at": self.started_at,
            "updated_at": self.updated_at, "finished_at": self.finished_at,
        }
