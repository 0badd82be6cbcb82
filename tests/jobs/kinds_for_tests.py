"""Job kinds for the job API tests (registered on import, like tests/rpc/methods_for_tests.py)."""
from __future__ import annotations

import threading
from typing import Any

from core.errors import InvalidArgs
from jobs.registry import job
from jobs.runner import JobContext

# Released by tests: a job waiting on its gate reports progress every few ms, which is where it sees a cancel.
GATES: dict[str, threading.Event] = {}


def gate(name: str) -> threading.Event:
    return GATES.setdefault(name, threading.Event())


@job("testjobs.count")
def count(ctx: JobContext) -> dict[str, Any]:
    steps = int(ctx.params["steps"])
    for n in range(steps):
        ctx.progress(n * 100 / steps, f"step {n + 1} of {steps}", data={"n": n})
    return {"counted": steps}


@job("testjobs.wait")
def wait(ctx: JobContext) -> dict[str, Any]:
    while not gate(ctx.params["gate"]).wait(0.02):
        ctx.progress(10, "waiting")
    return {}


@job("testjobs.resumable", resumable=True, max_attempts=2)
def resumable(ctx: JobContext) -> dict[str, Any]:
    start = (ctx.checkpoint or {}).get("next", 0)
    for n in range(start, 4):
        ctx.progress(n * 25, f"part {n}", checkpoint={"next": n + 1})
        if n == 1 and not start:
            while not gate(ctx.params["gate"]).wait(0.02):
                ctx.progress(25, "holding")
    return {"resumed_from": start}


@job("testjobs.fails")
def fails(ctx: JobContext) -> None:
    if ctx.params.get("typed"):
        raise InvalidArgs("the input file has no header row")
    raise ValueError("secret-ish internal detail /etc/passwd")
