"""RPCTEST.* — methods registered only by the RPC tests (the registry is process-global; importing registers them).

Executions are counted in Valkey (``rpctest:runs:{marker}``), so a test can prove a body ran exactly once even when
it ran on a worker thread of another request. Exceptions carry SECRET_TEXT so a test can prove it never leaks.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import time
from typing import Annotated, Any, Literal

from core.integrations.firebase import get_firestore
from core.integrations.redis import get_redis
from core.errors import NotFound, Unavailable
from rpc.registry import Namespace
from rpc.types import Bounded, DocId, Identifier, MaxLen, UserId, UserPath

NAMESPACE = "RPCTEST"
SECRET_TEXT = "SECRET-internal-detail-7f3a"  # must never appear in a response
ns = Namespace(NAMESPACE)


def runs(marker: str) -> int:
    return int(get_redis().get(f"rpctest:runs:{marker}") or 0)


def _count(marker: str) -> int:
    return int(get_redis().incr(f"rpctest:runs:{marker}"))


@ns.method(writes=False)
def echo(value: Any = None) -> dict[str, Any]:
    """Returns its argument."""
    return {"value": value}


@ns.method(writes=False)
def typed(count: int, ratio: float, name: Annotated[str, MaxLen(10)], flag: bool = False,
          tags: list[str] | None = None, mode: Literal["a", "b"] = "a",
          limit: Annotated[int, Bounded(1, 10)] = 5, pair: tuple[int, str] | None = None) -> dict[str, Any]:
    """Type checks without coercion."""
    return {"count": count, "ratio": ratio, "name": name, "flag": flag, "tags": tags, "mode": mode, "limit": limit,
            "pair": pair}


@ns.method(writes=False)
def variadic(first: int, *rest: int, **options: str) -> dict[str, Any]:
    return {"first": first, "rest": list(rest), "options": options}


@ns.method(writes=False)
def optional_default(label: str = None) -> str | None:  # type: ignore[assignment] - None default is the point
    return label


@ns.method(writes=True)
def count_call(marker: DocId, sleep_s: float = 0.0) -> dict[str, Any]:
    """Counts its executions, optionally slowly."""
    number = _count(marker)
    if sleep_s:
        time.sleep(sleep_s)
    return {"marker": marker, "run": number, "at": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)}


@ns.method(writes=True)
async def count_call_async(marker: DocId, sleep_s: float = 0.0) -> dict[str, Any]:
    number = _count(marker)
    if sleep_s:
        await asyncio.sleep(sleep_s)
    return {"marker": marker, "run": number}


@ns.method(writes=True)
def unavailable_first(marker: DocId) -> dict[str, int]:
    """UNAVAILABLE on the first run, success afterwards."""
    number = _count(marker)
    if number == 1:
        raise Unavailable("the backing service is down; retry")
    return {"run": number}


@ns.method(writes=True)
def connection_error_first(marker: DocId) -> dict[str, int]:
    """A raw ConnectionError (as a client library raises it) on the first run."""
    number = _count(marker)
    if number == 1:
        raise ConnectionError(f"connect to 10.0.0.7:6379 refused {SECRET_TEXT}")
    return {"run": number}


@ns.method(writes=True)
def internal_first(marker: DocId) -> dict[str, int]:
    """An unexpected exception (INTERNAL) on the first run, success afterwards."""
    number = _count(marker)
    if number == 1:
        raise RuntimeError(SECRET_TEXT)
    return {"run": number}


@ns.method(writes=True)
def not_found(marker: DocId) -> None:
    _count(marker)
    raise NotFound("no such document")


@ns.method(writes=False)
def raise_key_error() -> None:
    """A KeyError inside business code: INTERNAL, never METHOD_NOT_FOUND."""
    return {}[SECRET_TEXT]


@ns.method(writes=False)
def raise_type_error() -> None:
    """A TypeError inside business code: INTERNAL, never INVALID_ARGS."""
    raise TypeError(f"unsupported operand {SECRET_TEXT}")


@ns.method(writes=False)
def raise_runtime_error() -> None:
    raise RuntimeError(f"database password is hunter2 {SECRET_TEXT}")


@ns.method(writes=False)
def unserialisable() -> object:
    return object()


@ns.method(writes=False)
def rich_result() -> dict[str, Any]:
    paris = dt.timezone(dt.timedelta(hours=2))
    return {
        "aware": dt.datetime(2024, 5, 6, 9, 30, tzinfo=paris),
        "naive": dt.datetime(2024, 5, 6, 7, 30),
        "micro": dt.datetime(2024, 5, 6, 7, 30, 0, 123456, tzinfo=dt.timezone.utc),
        "day": dt.date(2024, 5, 6),
        "blob": b"\x00\xffhi",
        "amount": decimal.Decimal("10.10"),
        "tags": {"only"},
        "pair": (1, 2),
        "nan": float("nan"),
    }


@ns.method(writes=True)
def firestore_roundtrip(user_id: UserId, doc_id: DocId) -> dict[str, Any]:
    """Writes then reads a Firestore document (server timestamp and a reference) through the emulator."""
    from google.cloud import firestore

    db = get_firestore()
    ref = db.collection("clients").document(user_id).collection("rpctest").document(doc_id)
    ref.set({"when": firestore.SERVER_TIMESTAMP, "self": ref, "blob": b"abc"})
    snapshot = ref.get()
    return {"id": snapshot.id, **(snapshot.to_dict() or {})}


@ns.method(writes=False)
def whose(user_id: UserId) -> str:
    return user_id


@ns.method(writes=False)
def read_path(collection_path: UserPath) -> str:
    return collection_path


@ns.method(writes=False, path_params=("document_path",))
def read_declared_path(document_path: str) -> str:
    return document_path


@ns.method(writes=False)
def segment(name: Annotated[str, Identifier(20)]) -> str:
    return name


@ns.method(writes=False)
def seen_context() -> dict[str, Any]:
    """What a method body sees of the call's context (for its own logs and the events it publishes)."""
    import structlog

    from core.logging import current_trace_id

    return {"trace_id": current_trace_id(), "log_context": structlog.contextvars.get_contextvars()}


@ns.method(writes=False)
async def seen_context_async() -> dict[str, Any]:
    return seen_context()


@ns.method(writes=False, timeout_ceiling_ms=300)
def capped_sleep(sleep_s: float) -> str:
    time.sleep(sleep_s)
    return "woke"


@ns.method(writes=False)
def query_log_size() -> int:
    """How many queries this worker thread's connection had logged before this call, after running one query."""
    from django.db import connection

    before = len(connection.queries_log)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return before


@ns.method(writes=True)
def publish_events(user_id: UserId, count: int = 1, fail: bool = False) -> int:
    """Publishes ``count`` notif.job_updated events to the user's channel (and then fails with NOT_FOUND if asked)."""
    from realtime.publisher import publish_event

    for n in range(count):
        publish_event(user_id, "notif.job_updated", {"job_id": f"j{n}", "status": "done"})
    if fail:
        raise NotFound("published, then found nothing")
    return count


@ns.method(writes=True)
async def publish_events_async(user_id: UserId) -> str:
    from realtime.publisher import apublish_event

    return (await apublish_event(user_id, "notif.job_updated", {"job_id": "a", "status": "done"})).channel


@ns.method(writes=True)
def publish_to_users(user_id: UserId, others: list[str]) -> int:
    """A fan-out (one batched message) to the acting user and ``others``."""
    from realtime.publisher import publish_to_many

    return len(publish_to_many([user_id, *others], "notif.job_updated", {"job_id": "f", "status": "done"}))
