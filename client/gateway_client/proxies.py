"""Namespace proxies: ``FirebaseManagement().add_or_update_job_by_job_id(path, data)`` becomes one RPC.

Only methods the gateway lists at ``GET /rpc/methods`` (for this token) can be called; any other name raises
``UnknownMethod`` naming the closest listed ones. Names starting with ``_`` are never forwarded.

A proxy works with a sync ``RpcClient`` (methods return results) or an ``AsyncRpcClient`` (methods return
awaitables); without a client it uses the process defaults set by ``configure()``, async with ``asynchronous=True``.
A sync proxy checks the name when the attribute is read (so ``hasattr`` works); an async one when the call is
awaited (reading the catalogue needs the loop).

The envelope's ``user_id`` is the proxy's ``user_id`` when bound (recommended: the gateway then refuses any argument
naming another user), else the user the call's scoped arguments name (a ``user_id``, or the ``{uid}`` of a
``clients/{uid}/...`` path), which is what lets the original call sites work unchanged.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from typing import Any, Awaitable, Callable, ClassVar, Mapping, Sequence, TypeVar

from .rpc import AsyncRpcClient, RpcClient, default_async_client, default_client

T = TypeVar("T")
R = TypeVar("R")


def then(value: T | Awaitable[T], transform: Callable[[T], R]) -> R | Awaitable[R]:
    """Apply ``transform`` to a result, or to an awaitable's result once awaited (sync and async proxies share it)."""
    if inspect.isawaitable(value):
        async def chained() -> R:
            return transform(await value)  # type: ignore[misc]

        return chained()
    return transform(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class CallDefaults:
    user_id: str | None = None
    session_id: str | None = None
    timeout_ms: int | None = None


class NamespaceProxy:
    namespace: ClassVar[str]

    def __init__(
        self,
        client: RpcClient | AsyncRpcClient | None = None,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        timeout_ms: int | None = None,
        asynchronous: bool | None = None,
    ) -> None:
        if asynchronous is None:
            asynchronous = isinstance(client, AsyncRpcClient)
        elif client is not None and asynchronous != isinstance(client, AsyncRpcClient):
            raise ValueError("asynchronous=... contradicts the client given")
        self._given_client = client
        self._asynchronous = asynchronous
        self._defaults = CallDefaults(user_id, session_id, timeout_ms)

    @property
    def asynchronous(self) -> bool:
        return self._asynchronous

    @property
    def user_id(self) -> str | None:
        return self._defaults.user_id

    def with_options(self, **changes: Any) -> "NamespaceProxy":
        """A copy with other call defaults: ``proxy.with_options(timeout_ms=60_000)``."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone._defaults = replace(self._defaults, **changes)
        return clone

    def _client(self) -> RpcClient | AsyncRpcClient:
        if self._given_client is not None:
            return self._given_client
        return default_async_client() if self._asynchronous else default_client()

    def __getattr__(self, name: str) -> "RemoteMethod":
        if name.startswith("_"):
            raise AttributeError(name)
        full_name = f"{self.namespace}.{name}"
        doc = ""
        if not self._asynchronous:
            doc = self._client().method_info(full_name).doc  # type: ignore[union-attr] - raises UnknownMethod
        return RemoteMethod(self, name, doc)

    def __dir__(self) -> list[str]:
        names = set(super().__dir__())
        client = self._given_client
        catalogue = getattr(client, "_catalogue", None) if client is not None else None
        if catalogue is not None:
            names.update(catalogue.names(self.namespace))
        return sorted(names)

    def __repr__(self) -> str:
        bound = f" user_id={self.user_id!r}" if self.user_id else ""
        return f"<{type(self).__name__} {self.namespace}.*{bound}{' async' if self._asynchronous else ''}>"

    def _invoke(self, name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """Call ``NAMESPACE.name``: the result, or an awaitable of it for an async proxy."""
        full_name = f"{self.namespace}.{name}"
        client = self._client()
        if isinstance(client, AsyncRpcClient):
            return self._invoke_async(client, full_name, args, kwargs)
        info = client.method_info(full_name)
        user_id = self._defaults.user_id or info.acting_user(args, kwargs)
        return client.call(full_name, args, kwargs, user_id=user_id, session_id=self._defaults.session_id,
                           timeout_ms=self._defaults.timeout_ms)

    async def _invoke_async(self, client: AsyncRpcClient, full_name: str, args: Sequence[Any],
                            kwargs: Mapping[str, Any]) -> Any:
        info = await client.method_info(full_name)
        user_id = self._defaults.user_id or info.acting_user(args, kwargs)
        return await client.call(full_name, args, kwargs, user_id=user_id, session_id=self._defaults.session_id,
                                 timeout_ms=self._defaults.timeout_ms)


class RemoteMethod:
    """``proxy.name``: calling it runs the RPC with the arguments as given (positional and keyword)."""

    def __init__(self, proxy: NamespaceProxy, name: str, doc: str = "") -> None:
        self._proxy = proxy
        self.__name__ = name
        self.__doc__ = doc or None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._proxy._invoke(self.__name__, args, kwargs)

    def __repr__(self) -> str:
        return f"<remote method {self._proxy.namespace}.{self.__name__}>"


class FirebaseManagement(NamespaceProxy):
    """``FIREBASE_MANAGEMENT.*``: Firestore (jobs, notifications, task manager, journals, mandates...) and Stripe."""

    namespace = "FIREBASE_MANAGEMENT"


FireBaseManagement = FirebaseManagement  # the Reflex app's spelling


class FirebaseRealtimeChat(NamespaceProxy):
    """``FIREBASE_REALTIME.*``: Realtime Database chat threads and direct messages."""

    namespace = "FIREBASE_REALTIME"


class Registry(NamespaceProxy):
    """``REGISTRY.*``: sessions (register_user, heartbeat, unregister_session) and ``issue_ws_token``."""

    namespace = "REGISTRY"
