"""``RpcClient`` (sync) and ``AsyncRpcClient``: ``POST /rpc`` with the contract's envelope, retries and typed errors.

One logical call = one trace id and, for a method the catalogue marks ``writes``, one fresh idempotency key (uuid4);
every retry of that call reuses both, so the gateway runs a write once however many tries it takes, while two calls
with identical arguments are two writes. Reads carry no key (the gateway would store every read result for a day).
"""
from __future__ import annotations

import asyncio
import os
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import httpx
import tenacity

from ._protocol import (
    Answer, Reply, RetryPolicy, build_envelope, encode, http_timeout, new_id, parse_reply, transport_failure,
)
from .catalogue import Catalogue, MethodInfo
from .errors import Attempt, MethodNotFound, RpcError

__version__ = "1.0.0"

ENV_URL = "GATEWAY_URL"
ENV_TOKENS = ("GATEWAY_TOKEN", "LISTENERS_SERVICE_TOKEN")


def _setting(value: str | None, names: Sequence[str], what: str) -> str:
    if value:
        return value
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    raise ValueError(f"no gateway {what}: pass it, call gateway_client.configure(), or set {' or '.join(names)}")


@dataclass(frozen=True)
class _Prepared:
    body: bytes
    trace_id: str
    idempotency_key: str | None
    timeout_ms: int | None


class _ClientBase:
    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        timeout_ms: int | None = None,
        session_id: str | None = None,
        retry: RetryPolicy | None = None,
        catalogue_refresh_s: float = 30.0,
    ) -> None:
        self.base_url = _setting(base_url, (ENV_URL,), "URL").rstrip("/")
        self._token = _setting(token, ENV_TOKENS, "token")
        self.timeout_ms = timeout_ms
        self.session_id = session_id
        self.retry = retry or RetryPolicy()
        # A name missing from a catalogue older than this triggers one refetch (the gateway may have been updated).
        self.catalogue_refresh_s = catalogue_refresh_s
        self._catalogue: Catalogue | None = None

    @property
    def token(self) -> str:
        return self._token

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._token}",
            "Content-Type": "application/json",
            "User-Agent": f"gateway-client/{__version__}",
        }

    def _catalogue_is_stale_for(self, method: str) -> bool:
        catalogue = self._catalogue
        return catalogue is None or (catalogue.get(method) is None and catalogue.age_s() > self.catalogue_refresh_s)

    def _prepare(
        self, info: MethodInfo, args: Sequence[Any], kwargs: Mapping[str, Any] | None, *, user_id: str | None,
        idempotency_key: str | None, timeout_ms: int | None, trace_id: str | None, session_id: str | None,
    ) -> _Prepared:
        key = idempotency_key or (new_id() if info.writes else None)
        trace = trace_id or new_id()
        timeout = timeout_ms if timeout_ms is not None else self.timeout_ms
        envelope = build_envelope(
            info.name, args, kwargs or {}, user_id=user_id, session_id=session_id or self.session_id, trace_id=trace,
            idempotency_key=key, timeout_ms=timeout,
        )
        return _Prepared(encode(envelope), trace, key, timeout)

    @staticmethod
    def _reply(answer: Answer, prepared: _Prepared, attempts: list[Attempt]) -> Reply:
        return Reply(answer.data, answer.trace_id or prepared.trace_id, prepared.idempotency_key, answer.replayed,
                     tuple(attempts))

    def _failed(self, exc: RpcError, attempts: list[Attempt]) -> RpcError:
        exc.attempts = tuple(attempts)
        if isinstance(exc, MethodNotFound):
            self._catalogue = None  # the gateway no longer has it: the next call refetches the catalogue
        return exc


class RpcClient(_ClientBase):
    """Synchronous client; thread-safe (one connection pool shared by all threads)."""

    def __init__(self, base_url: str | None = None, token: str | None = None, *,
                 transport: httpx.BaseTransport | None = None, **options: Any) -> None:
        super().__init__(base_url, token, **options)
        self._http = httpx.Client(base_url=self.base_url, headers=self._headers(), transport=transport)
        self._catalogue_lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "RpcClient":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # --- catalogue ------------------------------------------------------------------------------------------------
    def refresh_catalogue(self) -> Catalogue:
        """Fetch ``GET /rpc/methods`` now (retrying an unreachable gateway like a call)."""
        attempts: list[Attempt] = []
        try:
            for attempt in tenacity.Retrying(**self.retry.tenacity_options(attempts)):
                with attempt:
                    answer = self._get("/rpc/methods")
        except RpcError as exc:
            raise self._failed(exc, attempts) from None
        self._catalogue = Catalogue.from_response(answer.data)
        return self._catalogue

    def catalogue(self) -> Catalogue:
        if self._catalogue is None:
            with self._catalogue_lock:
                if self._catalogue is None:
                    self.refresh_catalogue()
        return self._catalogue  # type: ignore[return-value]

    def method_info(self, method: str) -> MethodInfo:
        """The catalogue entry of ``method``; ``UnknownMethod`` when the gateway does not list it."""
        if self._catalogue_is_stale_for(method):
            with self._catalogue_lock:
                if self._catalogue_is_stale_for(method):
                    self.refresh_catalogue()
        return self.catalogue().require(method)

    # --- calls ------------------------------------------------------------------------------------------------------
    def request(
        self, method: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, *,
        user_id: str | None = None, idempotency_key: str | None = None, timeout_ms: int | None = None,
        trace_id: str | None = None, session_id: str | None = None, retry: RetryPolicy | None = None,
    ) -> Reply:
        """Call ``method`` and return its ``Reply`` (result, trace id, key, replayed, failed tries)."""
        info = self.method_info(method)
        prepared = self._prepare(info, args, kwargs, user_id=user_id, idempotency_key=idempotency_key,
                                 timeout_ms=timeout_ms, trace_id=trace_id, session_id=session_id)
        attempts: list[Attempt] = []
        try:
            for attempt in tenacity.Retrying(**(retry or self.retry).tenacity_options(attempts)):
                with attempt:
                    answer = self._post(prepared, method)
        except RpcError as exc:
            raise self._failed(exc, attempts) from None
        return self._reply(answer, prepared, attempts)

    def call(self, method: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
             **options: Any) -> Any:
        """Call ``method`` and return its result (``options`` as for ``request``)."""
        return self.request(method, args, kwargs, **options).data

    def _post(self, prepared: _Prepared, method: str) -> Answer:
        try:
            response = self._http.post("/rpc", content=prepared.body, timeout=http_timeout(prepared.timeout_ms))
        except httpx.TransportError as exc:
            raise transport_failure(exc, method=method) from exc
        return parse_reply(response, method=method)

    def _get(self, path: str) -> Answer:
        try:
            response = self._http.get(path, timeout=http_timeout(None))
        except httpx.TransportError as exc:
            raise transport_failure(exc, method=None) from exc
        return parse_reply(response, method=None)


class AsyncRpcClient(_ClientBase):
    """The same on asyncio; use it from one event loop."""

    def __init__(self, base_url: str | None = None, token: str | None = None, *,
                 transport: httpx.AsyncBaseTransport | None = None, **options: Any) -> None:
        super().__init__(base_url, token, **options)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self._headers(), transport=transport)
        self._catalogue_lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncRpcClient":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    async def refresh_catalogue(self) -> Catalogue:
        attempts: list[Attempt] = []
        try:
            async for attempt in tenacity.AsyncRetrying(**self.retry.tenacity_options(attempts)):
                with attempt:
                    answer = await self._get("/rpc/methods")
        except RpcError as exc:
            raise self._failed(exc, attempts) from None
        self._catalogue = Catalogue.from_response(answer.data)
        return self._catalogue

    async def catalogue(self) -> Catalogue:
        if self._catalogue is None:
            async with self._catalogue_lock:
                if self._catalogue is None:
                    await self.refresh_catalogue()
        return self._catalogue  # type: ignore[return-value]

    async def method_info(self, method: str) -> MethodInfo:
        if self._catalogue_is_stale_for(method):
            async with self._catalogue_lock:
                if self._catalogue_is_stale_for(method):
                    await self.refresh_catalogue()
        return (await self.catalogue()).require(method)

    async def request(
        self, method: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, *,
        user_id: str | None = None, idempotency_key: str | None = None, timeout_ms: int | None = None,
        trace_id: str | None = None, session_id: str | None = None, retry: RetryPolicy | None = None,
    ) -> Reply:
        info = await self.method_info(method)
        prepared = self._prepare(info, args, kwargs, user_id=user_id, idempotency_key=idempotency_key,
                                 timeout_ms=timeout_ms, trace_id=trace_id, session_id=session_id)
        attempts: list[Attempt] = []
        try:
            async for attempt in tenacity.AsyncRetrying(**(retry or self.retry).tenacity_options(attempts)):
                with attempt:
                    answer = await self._post(prepared, method)
        except RpcError as exc:
            raise self._failed(exc, attempts) from None
        return self._reply(answer, prepared, attempts)

    async def call(self, method: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
                   **options: Any) -> Any:
        return (await self.request(method, args, kwargs, **options)).data

    async def _post(self, prepared: _Prepared, method: str) -> Answer:
        try:
            response = await self._http.post("/rpc", content=prepared.body, timeout=http_timeout(prepared.timeout_ms))
        except httpx.TransportError as exc:
            raise transport_failure(exc, method=method) from exc
        return parse_reply(response, method=method)

    async def _get(self, path: str) -> Answer:
        try:
            response = await self._http.get(path, timeout=http_timeout(None))
        except httpx.TransportError as exc:
            raise transport_failure(exc, method=None) from exc
        return parse_reply(response, method=None)


# --- process-wide defaults (what the namespace proxies use when given no client) -----------------------------------
_defaults_lock = threading.Lock()
_default_options: dict[str, Any] = {}
_default_client: RpcClient | None = None
_default_async_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncRpcClient]" = (
    weakref.WeakKeyDictionary()
)


def configure(base_url: str | None = None, token: str | None = None, **options: Any) -> None:
    """Set the gateway URL, token and client options (``timeout_ms``, ``session_id``, ``retry``...) used by proxies
    created without an explicit client. Unset values fall back to GATEWAY_URL / GATEWAY_TOKEN
    (or LISTENERS_SERVICE_TOKEN)."""
    global _default_client
    with _defaults_lock:
        _default_options.clear()
        _default_options.update({"base_url": base_url, "token": token, **options})
        previous, _default_client = _default_client, None
        _default_async_clients.clear()  # their pools close with their loops; new ones pick up the new settings
    if previous is not None:
        previous.close()


def default_settings(client: _ClientBase | None = None) -> tuple[str | None, str | None]:
    """(base URL, token) of ``client``, else of ``configure()``, else of the environment; None where unset."""
    if client is not None:
        return client.base_url, client.token
    with _defaults_lock:
        url, token = _default_options.get("base_url"), _default_options.get("token")
    url = url or os.environ.get(ENV_URL)
    token = token or next((os.environ[name] for name in ENV_TOKENS if os.environ.get(name)), None)
    return url, token


def default_client() -> RpcClient:
    global _default_client
    with _defaults_lock:
        if _default_client is None:
            _default_client = RpcClient(**_default_options)
        return _default_client


def default_async_client() -> AsyncRpcClient:
    """One AsyncRpcClient per running event loop (an httpx pool belongs to the loop that opened it)."""
    loop = asyncio.get_running_loop()
    with _defaults_lock:
        client = _default_async_clients.get(loop)
        if client is None:
            client = _default_async_clients[loop] = AsyncRpcClient(**_default_options)
        return client


__all__ = [
    "AsyncRpcClient", "Reply", "RetryPolicy", "RpcClient", "configure", "default_async_client",
    "default_client", "default_settings",
]
