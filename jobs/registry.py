"""Job kinds, registered by name like RPC methods (rpc/registry.py): only what an app registers can ever run.

An app declares its kinds in ``<app>/jobs.py``::

    from jobs.registry import job

    @job("chroma.migrate_collection", resumable=True)
    def migrate(ctx: JobContext) -> dict: ...

``resumable`` kinds are restarted from their last checkpoint when the process running them dies (up to
``max_attempts`` runs); the others are marked ``error``. Discovery imports every installed app's ``jobs`` module
once, on first lookup, so processes that never touch jobs pay nothing.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any, Callable

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")

_KINDS: dict[str, "JobKind"] = {}
_discovered = False
_lock = threading.Lock()


@dataclass(frozen=True)
class JobKind:
    name: str
    func: Callable[..., dict[str, Any] | None]  # called with a jobs.runner.JobContext
    resumable: bool
    max_attempts: int


def job(name: str, *, resumable: bool = False, max_attempts: int = 3) -> Callable[[Callable], Callable]:
    if not _NAME_RE.match(name) or len(name) > 128:
        raise ValueError(f"bad job name {name!r} (dotted snake_case)")

    def register(func: Callable) -> Callable:
        if name in _KINDS and _KINDS[name].func is not func:
            raise ValueError(f"job {name} registered twice")
        _KINDS[name] = JobKind(name=name, func=func, resumable=resumable, max_attempts=max(1, max_attempts))
        return func

    return register


def autodiscover() -> None:
    global _discovered
    if _discovered:
        return
    with _lock:
        if not _discovered:
            from django.utils.module_loading import autodiscover_modules

            autodiscover_modules("jobs")
            _discovered = True


def get_kind(name: str) -> JobKind | None:
    autodiscover()
    return _KINDS.get(name)
