"""``POST /rpc``, independent of the HTTP server: bearer, body and trace id in, status and body bytes out.

The order of checks is the contract's: authentication (401) before the body is even read, then size (413), JSON and
envelope (400), method (METHOD_NOT_FOUND), namespace grant (403), argument binding (INVALID_ARGS), tenant scoping (403),
idempotency (409/422 or a replay), and only then the call, under its deadline.

Both HTTP front ends call ``handle``: ``rpc.asgi.RpcEndpoint`` directly on the server's event loop (production), and
the DRF view through ``execution.rpc_loop()`` (Django's test client, or ASGI without the endpoint mounted).
"""
from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import redis
import structlog
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from core import activity, provenance
from core.integrations.redis import get_async_redis
from core.logging import trace_id_from_traceparent, trace_id_var
from core.metrics import RPC_CALLS, RPC_ERRORS, RPC_IDEMPOTENT_REPLAYS, RPC_IN_FLIGHT, RPC_LATENCY

from . import idempotency
from .acting import acting_user_var
from .auth import Principal, authenticate, authenticate_service_token, bearer_token, cached_api_client
from .envelope import parse_envelope
from core.errors import Internal, InvalidRequest, RpcError, Timeout, Unauthenticated
from .execution import Outcome, Run, classify, release_db_connections, worker_threads
from .registry import MethodSpec, resolve
from .services import split_token
from core.serialization import dumps, loads

log = structlog.get_logger("rpc")
_std_log = logging.getLogger("rpc")  # the stdlib logger behind ``log``: its level decides what is written

UNRESOLVED_METHOD = "unknown"  # metrics label for calls that never reached a registered method (bounded cardinality)
# Runs that outlive their request (settling after a TIMEOUT) are referenced here, or the loop could drop them.
_background: set[asyncio.Task] = set()

BodyReader = Callable[[int], Awaitable[bytes]]


@dataclass(slots=True)  # not frozen: cheaper to build (one per call), and never changed after
class Reply:
    status: int
    body: bytes
    replayed: bool = False
    retry_after_ms: int | None = None


def render(*, result: Any = None, error: RpcError | None = None, trace_id: str,
           events: list[tuple[str, int]] | None = None) -> tuple[bytes, RpcError | None]:
    """The response body, and the error it carries (a result that can't be serialised becomes INTERNAL).

    ``events``: the (channel, seq) of the events the call published, as ``"events"`` (README, "Events a write
    published"); absent when it published none, so every other response keeps its exact bytes."""
    if error is None:
        try:
            if events:
                return dumps({"ok": True, "data": result, "trace_id": trace_id,
                              "events": provenance.events_json(events)}), None
            return dumps({"ok": True, "data": result, "trace_id": trace_id}), None
        except TypeError:  # orjson.JSONEncodeError: a value JSON can't carry; the method's bug, not the caller's
            log.error("rpc_result_not_serialisable", exc_info=True)
            error = Internal()
    payload = error.as_dict()
    if isinstance(error, Internal) and error.message == Internal.default_message:
        payload["message"] = f"internal error (trace_id {trace_id})"
    if events:  # published before it failed: the events exist, the caller may see them
        return dumps({"ok": False, "error": payload, "trace_id": trace_id,
                      "events": provenance.events_json(events)}), error
    return dumps({"ok": False, "error": payload, "trace_id": trace_id}), error


def trace_id_from_header(value: str | None, traceparent: str | None = None) -> str:
    """The caller's ``X-Trace-Id`` when it is sane (same rule as TraceIdMiddleware), else the trace id of a W3C
    ``traceparent`` header, else a new random id."""
    if value and len(value) <= 128 and value.isprintable():
        return value
    return trace_id_from_traceparent(traceparent) or secrets.token_hex(16)


async def authenticate_async(authorization: str | None) -> Principal:
    """The service token and cached API client tokens are checked on the loop; only a cache miss needs the database
    (a worker thread, at most once per token per rpc.token_cache.TTL_S)."""
    token = bearer_token(authorization)
    principal = authenticate_service_token(token)
    if principal is not None:
        return principal
    if token is None or split_token(token) is None:
        raise Unauthenticated()
    cached = cached_api_client(token)  # the common case: answered on the loop, no thread hop, no SQL
    if isinstance(cached, Principal):
        return cached
    if cached is None:
        raise Unauthenticated()
    return await sync_to_async(_authenticate_in_thread, thread_sensitive=False)(token)


def _authenticate_in_thread(token: str | None) -> Principal:
    close_old_connections()  # what Django's request signals would do: never reuse a broken or expired connection
    try:
        return authenticate(token)
    finally:
        release_db_connections()  # closes what close_old_connections would, and clears DEBUG's query log


async def handle(*, authorization: str | None, read_body: BodyReader, trace_id: str) -> Reply:
    """Answer one /rpc request. Never raises: every failure is a typed error envelope."""
    started = time.perf_counter()
    trace_token = trace_id_var.set(trace_id)
    structlog.contextvars.clear_contextvars()
    call = _Call(trace_id)
    try:
        reply = await call.run(authorization, read_body)
        # The original service's log names (README, "Logs"): one rpc_call, then one rpc_ok or rpc_error, per call.
        # A method's own error was logged as rpc_error where it was rendered. The level is asked of the stdlib
        # logger (a dict lookup) rather than through structlog's proxy: this runs on every call.
        if call.code in ("OK", "REPLAYED") and _std_log.isEnabledFor(logging.INFO):
            log.info("rpc_ok", method=call.method_label, duration_ms=_ms_since(started), replayed=reply.replayed)
    except RpcError as error:
        reply = await call.error_reply(error)
    except Exception:  # noqa: BLE001 - a bug in the gateway itself: logged with its trace, answered as INTERNAL
        log.exception("rpc_gateway_failed", method=call.method_label)
        reply = await call.error_reply(Internal())
    finally:
        trace_id_var.reset(trace_token)
    elapsed = time.perf_counter() - started
    _calls_counter(call.method_label, call.code).inc()
    if call.code not in activity.SUCCESS_CODES:
        _errors_counter(call.method_label.partition(".")[0], call.code).inc()
    activity.record_rpc_call(code=call.code, method=call.method_label, client=call.client_scope,
                             trace_id=call.trace_id, duration_ms=round(elapsed * 1000, 2))
    if call.published:  # the console's trace page: which call caused these events (core/provenance.py)
        call.record_provenance(call.code, round(elapsed * 1000, 2))
    _latency_histogram(call.method_label).observe(elapsed)
    return reply


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


# Metric children per label set, looked up once: labels() takes a lock and builds a tuple on every call. The label
# values are bounded (registered method names, "unknown", the error codes), so the caches are too.
@functools.cache
def _calls_counter(method: str, code: str) -> Any:
    return RPC_CALLS.labels(method, code)


@functools.cache
def _errors_counter(service: str, code: str) -> Any:
    return RPC_ERRORS.labels(service, code)


@functools.cache
def _latency_histogram(method: str) -> Any:
    return RPC_LATENCY.labels(method)


class _Call:
    """State of one request while it is being answered (labels for metrics, trace id, reply channel)."""

    def __init__(self, trace_id: str) -> None:
        self.started = time.perf_counter()
        self.trace_id = trace_id
        self.method_label = UNRESOLVED_METHOD
        self.client_scope = "anonymous"  # the principal's scope once authenticated: "svc" or "c{pk}" (rpc/auth.py)
        self.code = "OK"
        self.reply_to: str | None = None
        self.user_id: str | None = None
        self.published: list[tuple[str, int]] = []  # (channel, seq) of the events the method body publishes
        self.late = False  # set when the caller was answered TIMEOUT while the run was still going

    def record_provenance(self, code: str, duration_ms: float, **extra: Any) -> None:
        provenance.record(self.trace_id, origin="rpc", events=self.published, method=self.method_label,
                          client=self.client_scope, uid=self.user_id, code=code, duration_ms=duration_ms, **extra)

    async def run(self, authorization: str | None, read_body: BodyReader) -> Reply:
        principal = await authenticate_async(authorization)
        self.client_scope = principal.scope
        body = await read_body(settings.RPC_MAX_BODY_BYTES)
        try:
            data = loads(body)
        except ValueError:
            raise InvalidRequest("body is not valid JSON") from None
        envelope = parse_envelope(data)
        if envelope.trace_id:
            self.trace_id = envelope.trace_id
            trace_id_var.set(self.trace_id)
        if envelope.reply_to is not None and not envelope.reply_to.startswith(principal.reply_prefix):
            raise InvalidRequest(f"reply_to: must start with {principal.reply_prefix!r}")
        self.reply_to = envelope.reply_to
        acting_user_var.set(envelope.user_id)  # this request's own context (one task per request)
        self.user_id = envelope.user_id
        structlog.contextvars.bind_contextvars(rpc_method=envelope.method[:200], uid=envelope.user_id)
        if _std_log.isEnabledFor(logging.DEBUG):  # skip building the event at INFO: this runs on every call
            log.debug("rpc_call", method=envelope.method[:200])
        spec = resolve(envelope.method)
        self.method_label = spec.full_name
        principal.require_namespace(spec.namespace)
        principal.require_user(envelope.user_id)
        bound = spec.bind(envelope.args, envelope.kwargs)
        spec.check_scope(bound, envelope.user_id)
        if principal.bound_companies:  # require_user has made sure there is a user_id
            await _off_the_loop(spec, principal.require_company_user, envelope.user_id)
        if spec.owned_params:  # spaces, collections…: a lookup (Firestore, Redis, Chroma), so not on the loop
            await _off_the_loop(spec, spec.check_ownership, bound, envelope.user_id)
        keyed = idempotency.applies_to(spec)
        if keyed and not envelope.idempotency_key:
            raise InvalidRequest(f"idempotency_key is required for {spec.full_name} (it writes)")
        deadline_ms = min(envelope.timeout_ms or settings.RPC_DEFAULT_TIMEOUT_MS, spec.timeout_ceiling_ms)
        deadline = time.monotonic() + deadline_ms / 1000

        claim = None
        if keyed and envelope.idempotency_key:
            fp = idempotency.fingerprint(spec.full_name, envelope.args, envelope.kwargs)
            if spec.script_write is not None and envelope.user_id:
                write = spec.script_write(envelope.user_id, *bound.args, **bound.kwargs)
                return await self._run_script_write(spec, write, principal.scope, envelope.idempotency_key, fp,
                                                    deadline)
            outcome = await idempotency.claim(  # per API client and acting user (contract §1, rpc/idempotency.py)
                scope=principal.scope, key=envelope.idempotency_key, fp=fp, deadline_ms=deadline_ms,
                user_id=envelope.user_id,
            )
            if isinstance(outcome, idempotency.StoredResponse):
                RPC_IDEMPOTENT_REPLAYS.labels(spec.full_name).inc()
                self.code = "REPLAYED"
                await publish_reply(self.reply_to, outcome.body)
                return Reply(outcome.status, outcome.body, replayed=True)
            claim = outcome
        # Set in this task's context before the run's task and thread copy it: the publisher appends to this list.
        self.published = provenance.collect_published_events()
        return await self._execute(spec, bound.args, bound.kwargs, claim, deadline)

    async def _execute(self, spec: MethodSpec, args: tuple, kwargs: dict[str, Any],
                       claim: idempotency.Claim | None, deadline: float) -> Reply:
        run = Run(spec, args, kwargs)
        settling = asyncio.get_running_loop().create_task(self._settle(run, claim, self.reply_to))
        await _done_or_deadline(settling, deadline)
        if settling.done():
            body, error = settling.result()
            if error is not None:
                self._log_error(error)
            self.code = error.code if error else "OK"
            if self.reply_to:
                await publish_reply(self.reply_to, body)
            return Reply(200, body)
        # Deadline passed. A run that never started is abandoned and its key released at once, so a retry runs it;
        # the TIMEOUT envelope is then the final answer, reply_to included. A run that started goes on: its result
        # is stored for the retry, and reply_to receives that result when it comes instead of the TIMEOUT.
        if run.abandon_if_not_started():
            # Every worker thread stayed busy for the whole deadline: a capacity signal (RPC_WORKER_THREADS).
            log.warning("rpc_abandoned_before_start", method=spec.full_name, worker_threads=settings.RPC_WORKER_THREADS)
            if claim is not None:
                _spawn(_settle_claim(claim, release=True))
        else:
            self.late = True
            self.reply_to = None
        _spawn(settling)
        raise Timeout()

    async def _run_script_write(self, spec: MethodSpec, write: idempotency.ScriptWrite, scope: str, key: str,
                                fp: str, deadline: float) -> Reply:
        """A keyed write that is one script on the user's slot: claim, write and stored response in one round trip
        (rpc/idempotency.py), under the call's deadline like any run. Past the deadline the script still completes
        in Redis (a retry then gets its stored response) and ``reply_to`` receives its outcome instead of TIMEOUT."""
        bodies = {reply: render(result=value, trace_id=self.trace_id)[0] for reply, value in write.results.items()}
        running = asyncio.ensure_future(self._keyed_write(spec, write, scope, key, fp, bodies))
        await _done_or_deadline(running, deadline)
        if not running.done():
            reply_to, self.reply_to = self.reply_to, None
            _spawn(self._publish_late(running, reply_to))
            raise Timeout()
        reply = running.result()  # or its typed error: answered by handle() like a failed claim
        if reply.replayed:
            RPC_IDEMPOTENT_REPLAYS.labels(spec.full_name).inc()
            self.code = "REPLAYED"
        if self.reply_to:
            await publish_reply(self.reply_to, reply.body)
        return reply

    async def _keyed_write(self, spec: MethodSpec, write: idempotency.ScriptWrite, scope: str, key: str, fp: str,
                           bodies: dict[str, bytes]) -> Reply:
        RPC_IN_FLIGHT.inc()
        try:
            outcome = await idempotency.run_keyed(write, scope=scope, key=key, user_id=self.user_id or "", fp=fp,
                                                  bodies=bodies)
        except RpcError:
            raise
        except Exception as exc:  # noqa: BLE001 - the write's script failed: its bug, logged with its trace
            log.error("rpc_method_failed", method=spec.full_name, code="INTERNAL", exc_info=exc)
            raise Internal() from None
        finally:
            RPC_IN_FLIGHT.dec()
        if isinstance(outcome, idempotency.StoredResponse):
            return Reply(outcome.status, outcome.body, replayed=True)
        return Reply(200, bodies[outcome.reply])

    async def _publish_late(self, running: asyncio.Future, reply_to: str | None) -> None:
        """After a TIMEOUT answer: the keyed write's own outcome, logged and sent to ``reply_to``."""
        try:
            body = (await running).body
        except RpcError as error:
            self._log_error(error)
            body, _ = render(error=error, trace_id=self.trace_id)
        await publish_reply(reply_to, body)

    async def _settle(self, run: Run, claim: idempotency.Claim | None,
                      reply_to: str | None) -> tuple[bytes, RpcError | None]:
        outcome: Outcome = await run.outcome()
        if not outcome.started:  # abandoned: _execute already released the key and answered TIMEOUT
            return b"", Timeout()
        body, error = render(result=outcome.result, error=outcome.error, trace_id=self.trace_id, events=self.published)
        if claim is not None:
            # UNAVAILABLE / INTERNAL / TIMEOUT raised by the method: release, so a retry with the same key runs again.
            await _settle_claim(claim, release=error is not None and error.retryable, status=200, body=body)
        if self.late:  # the request has been answered TIMEOUT and logged; this is the run's own outcome
            if error is not None:
                self._log_error(error)
            if self.published:  # replaces the TIMEOUT record with what the run really did
                self.record_provenance(error.code if error else "OK", _ms_since(self.started), settled_late=True)
            await publish_reply(reply_to, body)
        return body, error

    async def error_reply(self, error: RpcError) -> Reply:
        self.code = error.code
        self._log_error(error)
        body, _ = render(error=error, trace_id=self.trace_id)
        await publish_reply(self.reply_to, body)
        return Reply(error.http_status, body, retry_after_ms=error.retry_after_ms)

    def _log_error(self, error: RpcError) -> None:
        """Every error answered is one ``rpc_error`` with its trace id: failures as errors/warnings, the caller's
        mistakes (with the reason we gave them) as info."""
        fields = {"code": error.code, "method": self.method_label, "trace_id": self.trace_id,
                  "duration_ms": _ms_since(self.started)}
        if error.code == "INTERNAL":
            log.error("rpc_error", **fields)
        elif error.code in ("TIMEOUT", "UNAVAILABLE"):
            log.warning("rpc_error", **fields)
        else:
            log.info("rpc_error", reason=error.message, **fields)


async def _done_or_deadline(task: asyncio.Task, deadline: float) -> None:
    """Wait until ``task`` is done or the deadline passes, whichever comes first; never cancels ``task``.

    What asyncio.wait({task}, timeout) does, without its per-call type checks (measurable at thousands of calls/s).
    """
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    task.add_done_callback(wake)
    timer = loop.call_later(max(0.0, deadline - time.monotonic()), wake)
    try:
        await waiter
    finally:
        timer.cancel()
        task.remove_done_callback(wake)


async def _off_the_loop(spec: MethodSpec, check: Callable[..., None], *args: Any) -> None:
    """A blocking scope check (spaces, collections, a client's companies) on a worker thread; a backing service
    failing is UNAVAILABLE, never INTERNAL."""
    context = contextvars.copy_context()
    try:
        await worker_threads().run(context.run, check, *args)
    except RpcError:
        raise
    except Exception as exc:  # noqa: BLE001 - classified like a method's failure; the text stays in the log
        error = classify(exc)
        log.warning("rpc_scope_check_failed", method=spec.full_name, code=error.code, exc_info=exc)
        raise error from None


async def _settle_claim(claim: idempotency.Claim, *, release: bool, status: int = 200, body: bytes = b"") -> None:
    try:
        if release:
            await claim.release()
        else:
            await claim.store(status, body)
    except RpcError:
        # Redis went away between claim and settle: the key stays "running" until its lease expires (deadline +
        # LEASE_MARGIN_MS), then a retry runs the call again.
        log.warning("rpc_idempotency_settle_failed", key=claim.redis_key)


async def publish_reply(channel: str | None, body: bytes) -> None:
    """PUBLISH the response envelope to the caller's reply channel (success and error alike)."""
    if not channel or not body:
        return
    try:
        await get_async_redis().publish(channel, body)
    except (redis.RedisError, OSError):
        # The caller still has its HTTP answer; the failure is visible in the log, not hidden.
        log.warning("rpc_reply_to_publish_failed", channel=channel, exc_info=log.isEnabledFor(logging.DEBUG))


def _spawn(coroutine: Awaitable[None]) -> None:
    task = asyncio.ensure_future(coroutine)
    _background.add(task)
    task.add_done_callback(_background.discard)
