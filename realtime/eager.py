"""Run a coroutine on the caller's stack until it first waits; only then does it become a task.

A WebSocket send under uvicorn completes without ever waiting while the transport is writable (asyncio's flow
control: uvicorn's ``send`` awaits an Event that is set). Making a task for each socket's frame costs a task switch
per recipient: a fan-out to 1,000 users was 1,000 tasks scheduled and run one loop iteration later. This is the
eager start of Python 3.12's ``asyncio.eager_task_factory``, for one call site, on 3.11: the common case finishes
inline, and a send that has to wait (a slow client's full buffer) is finished by a task, with the same result and
cancellation as if it had been one from the start.
"""
from __future__ import annotations

import asyncio
from typing import Any, Coroutine, Generator


class _Resumed:
    """The rest of a coroutine that already ran until it yielded ``pending`` (the future it waits on)."""

    def __init__(self, coroutine: Coroutine[Any, Any, Any], pending: Any) -> None:
        self._coroutine = coroutine
        self._pending = pending

    def __await__(self) -> Generator[Any, Any, Any]:
        pending = self._pending
        while True:
            try:
                value = yield pending  # the task waits on the same future the coroutine waits on
            except BaseException as exc:  # cancellation (or any throw) goes to the coroutine, as in a task
                try:
                    pending = self._coroutine.throw(exc)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                pending = self._coroutine.send(value)
            except StopIteration as stop:
                return stop.value


async def _finish(resumed: _Resumed) -> Any:
    return await resumed


def start_eagerly(coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task | None:
    """Run ``coroutine`` now, on this stack: None when it finished without waiting (its exception, if any, is
    raised here), else the task that finishes it. Call it on the event loop."""
    try:
        pending = coroutine.send(None)
    except StopIteration:
        return None
    return asyncio.get_running_loop().create_task(_finish(_Resumed(coroutine, pending)))
