"""The RPC method registry: only what a namespace registers can ever be called.

A namespace is declared once, and each method is registered by the decorator beside its function::

    ns = Namespace("REGISTRY")

    @ns.method(writes=False)
    def ping() -> dict: ...

``autodiscover`` imports ``<app>/rpc_methods.py`` of every installed app; that module either declares and registers
the methods itself (``registry``, ``chroma``) or imports the modules that do (``firebase_data``). A namespace shared by
several apps is declared in one of them and imported by the others (``billing`` registers in ``firebase_data``'s
``FIREBASE_MANAGEMENT``): a second ``Namespace("X")`` is refused at import time.

Resolution is a dictionary lookup on the full name. There is no ``getattr`` anywhere, so private names, dunders and
attributes of service objects are unreachable by construction (the original returned the Stripe key through
``FIREBASE_MANAGEMENT.__getattribute__``).
"""
from __future__ import annotations

import functools
import inspect
import re
import sys
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

from django.conf import settings

from core.errors import InvalidArgs, MethodNotFound, PermissionDenied
from .types import (
    ActingUser, Checker, InUserTree, Owned, Public, Scope, UserScopedPath, Within, checker_for, path_owner, rules_of,
    scope_of,
)

_NAMESPACE_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,127}$")  # no leading underscore: private names never register

_METHODS: dict[str, "MethodSpec"] = {}
_DECLARED_IN: dict[str, str] = {}  # namespace name -> the module that declared it


@dataclass(slots=True)  # not frozen: one per call, and a frozen dataclass sets each field through object.__setattr__
class BoundCall:
    """A call's arguments bound to its method: by name (scope checks) and as the call passes them."""

    arguments: dict[str, Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class MethodSpec:
    namespace: str
    name: str
    func: Callable[..., Any]
    writes: bool
    timeout_ceiling_ms: int
    user_params: tuple[str, ...]
    path_params: tuple[str, ...]
    signature: inspect.Signature
    hints: dict[str, Any] = field(repr=False)
    scopes: dict[str, Scope] = field(default_factory=dict, repr=False)  # parameter -> its scope marker
    # A write whose repetition is harmless by design (re-registering a session refreshes it): its key is neither
    # required nor stored, so a repeated call does the work again instead of replaying a stale answer.
    repeatable: bool = False
    # ``(acting user, *args, **kwargs) -> idempotency.ScriptWrite``: the method's whole effect as one script on the
    # user's slot, so a keyed call is claimed, run and stored in one round trip (rpc/idempotency.py). The function
    # itself still serves calls without a key or without a user.
    script_write: Callable[..., Any] | None = None

    @functools.cached_property
    def owned_params(self) -> tuple[tuple[str, Owned], ...]:
        """Parameters whose ownership is decided by a lookup (``Owned``): checked off the event loop."""
        return tuple((name, scope) for name, scope in self.scopes.items() if isinstance(scope, Owned))

    @property
    def full_name(self) -> str:
        return f"{self.namespace}.{self.name}"

    @functools.cached_property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)

    @property
    def doc(self) -> str:
        return inspect.cleandoc(self.func.__doc__ or "")

    @functools.cached_property
    def _checkers(self) -> dict[str, Checker]:
        """Each hinted parameter's type check (rpc.types.checker_for), built once."""
        return {name: checker_for(self.hints[name]) for name in self.signature.parameters if name in self.hints}

    @functools.cached_property
    def _positional_plan(self) -> tuple[tuple[str, ...], dict[str, Any]] | None:
        """(parameter names, their defaults) when every parameter is an ordinary one (most methods), else None."""
        params = self.signature.parameters.values()
        if any(param.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD for param in params):
            return None
        return tuple(param.name for param in params), {
            param.name: param.default for param in params if param.default is not inspect.Parameter.empty
        }

    def bind(self, args: list[Any], kwargs: dict[str, Any]) -> BoundCall:
        """Bind and type-check before the call, so errors raised inside the method are never blamed on the caller.

        Only what the caller sent is checked: defaults are the method author's business (``x: str = None`` is a
        common way to say "optional"). The message names parameters only, never Python's own exception text.
        """
        plan = self._positional_plan
        if plan is not None and not kwargs and len(args) <= len(plan[0]):
            # The usual call (positional arguments only) bound by a zip: inspect.Signature.bind and apply_defaults
            # were a third of the gateway's own cost per call on the login path (bench/login_profile.py).
            names, defaults = plan
            missing = names[len(args):]
            if all(name in defaults for name in missing):
                arguments = dict(zip(names, args))
                checkers = self._checkers
                for name, value in arguments.items():
                    check = checkers.get(name)
                    if check is not None:
                        check(name, value)
                for name in missing:
                    arguments[name] = defaults[name]
                return BoundCall(arguments, tuple(arguments.values()), {})
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError:  # Signature.bind raises TypeError only for arguments that don't fit the signature
            raise InvalidArgs(self._mismatch_message(args, kwargs)) from None
        checkers = self._checkers
        for name, value in bound.arguments.items():
            check = checkers.get(name)
            if check is None:
                continue
            kind = self.signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                for index, item in enumerate(value):
                    check(f"{name}[{index}]", item)
            elif kind is inspect.Parameter.VAR_KEYWORD:
                for key, item in value.items():
                    check(key, item)
            else:
                check(name, value)
        bound.apply_defaults()
        return BoundCall(bound.arguments, bound.args, bound.kwargs)

    def _mismatch_message(self, args: list[Any], kwargs: dict[str, Any]) -> str:
        params = self.signature.parameters.values()
        kinds = inspect.Parameter
        accepts_var_kw = any(p.kind is kinds.VAR_KEYWORD for p in params)
        named = {p.name for p in params if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)}
        unexpected = sorted(k for k in kwargs if k not in named) if not accepts_var_kw else []
        if unexpected:
            shown = ", ".join(repr(k[:64]) for k in unexpected[:5])
            return f"{self.full_name} has no parameter {shown}; expected {self.params_text()}"
        return f"arguments do not match {self.full_name}{self.params_text()}"

    def params_text(self) -> str:
        """The call shape, e.g. ``(user_id, job_id, limit=50, *, dry_run=False)`` (names and defaults only)."""
        parts: list[str] = []
        keyword_only_started = False
        for param in self.signature.parameters.values():
            if param.kind is inspect.Parameter.VAR_POSITIONAL:
                parts.append(f"*{param.name}")
                keyword_only_started = True
                continue
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                parts.append(f"**{param.name}")
                continue
            if param.kind is inspect.Parameter.KEYWORD_ONLY and not keyword_only_started:
                parts.append("*")
                keyword_only_started = True
            default = "" if param.default is inspect.Parameter.empty else f"={_json_safe(param.default)!r}"
            parts.append(f"{param.name}{default}")
        return f"({', '.join(parts)})"

    def check_scope(self, bound: BoundCall, acting_user: str | None) -> None:
        """Tenant scoping: arguments naming a user or a ``clients/{uid}/`` path must name the envelope's user."""
        for name in self.user_params:
            value = bound.arguments.get(name)
            if value is None:
                continue
            if acting_user is None or value != acting_user:
                raise PermissionDenied(f"{name} does not match the envelope user_id")
        for name in self.path_params:
            value = bound.arguments.get(name)
            if value is None:
                continue
            if not isinstance(value, str):
                raise InvalidArgs(f"{name} must be a path string")
            # Declared path parameters may lack the UserPath hint: refuse '..' and empty segments here too, so
            # "clients/me/../other" can never pass the owner test below.
            UserScopedPath().check(name, value)
            if acting_user is None or path_owner(value) != acting_user:
                raise PermissionDenied(f"{name} must be under clients/<envelope user_id>/")
        if self.owned_params and acting_user is None:
            raise PermissionDenied(f"{self.full_name} acts for a user: the envelope needs a user_id")

    def check_ownership(self, bound: BoundCall, acting_user: str) -> None:
        """The ``Owned`` arguments (spaces, Chroma collections…) against the acting user. Blocking: it may read
        Firestore, Redis or Chroma, so the gateway runs it on a worker thread, after ``check_scope``."""
        for name, scope in self.owned_params:
            value = bound.arguments.get(name)
            for item in value if isinstance(value, list) else [value]:
                if item is not None:
                    scope.resolve(acting_user, item)

    def describe(self) -> dict[str, Any]:
        params = []
        for param in self.signature.parameters.values():
            entry: dict[str, Any] = {"name": param.name, "kind": param.kind.name.lower()}
            hint = self.hints.get(param.name)
            if hint is not None:
                entry["type"] = _hint_text(hint)
            if param.default is not inspect.Parameter.empty:
                entry["default"] = _json_safe(param.default)
            params.append(entry)
        return {
            "method": self.full_name,
            "writes": self.writes,
            "params": params,
            "returns": _hint_text(self.hints.get("return", typing.Any)),
            "timeout_ceiling_ms": self.timeout_ceiling_ms,
            "scoped_by": [*self.user_params, *self.path_params],
            "scopes": {name: _scope_text(scope) for name, scope in self.scopes.items()},
            "doc": self.doc,
        }


def _json_safe(value: Any) -> Any:
    """A default as the catalogue shows it: JSON scalars as they are, anything else as its repr."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)) and all(v is None or isinstance(v, (bool, int, float, str)) for v in value):
        return list(value)
    return repr(value)


def _scope_text(scope: Scope) -> str:
    """How the catalogue names a scope: ``user``, ``user_path``, ``in_user_tree``, ``owned:space``,
    ``within:space_code``, ``public``."""
    if isinstance(scope, Owned):
        return f"owned:{scope.what}"
    if isinstance(scope, Within):
        return f"within:{scope.container}"
    return {ActingUser: "user", UserScopedPath: "user_path", InUserTree: "in_user_tree", Public: "public"}[type(scope)]


def _hint_text(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    text = getattr(hint, "__name__", None) if isinstance(hint, type) else None
    return text or str(hint).replace("typing.", "")


class Namespace:
    """One RPC namespace, declared exactly once: every module registering in it imports that one declaration, so
    ``grep`` for it finds the whole namespace, and a module cannot start a second copy of it by accident."""

    def __init__(self, name: str) -> None:
        if not _NAMESPACE_RE.match(name):
            raise ValueError(f"bad namespace name {name!r}")
        # The caller's module, so the error below can say where the declaration to import lives.
        declaring_module = sys._getframe(1).f_globals.get("__name__", "?")
        if name in _DECLARED_IN:
            raise ValueError(
                f"RPC namespace {name} is already declared in {_DECLARED_IN[name]}; "
                f"{declaring_module} must import that declaration instead of declaring it again"
            )
        _DECLARED_IN[name] = declaring_module
        self.name = name

    def method(
        self,
        func: Callable[..., Any] | None = None,
        *,
        writes: bool,
        repeatable: bool = False,
        script_write: Callable[..., Any] | None = None,
        user_params: tuple[str, ...] | None = None,
        path_params: tuple[str, ...] | None = None,
        timeout_ceiling_ms: int | None = None,
        name: str | None = None,
    ) -> Any:
        """Register ``func`` as ``NAMESPACE.name``.

        ``writes`` makes ``idempotency_key`` mandatory, unless ``repeatable`` (see MethodSpec); ``script_write``
        builds the same write as one keyed script (see MethodSpec). Scoping comes from the type hints
        (``UserId``/``UserPath``) and, by default, from a parameter called ``user_id``; ``user_params``/``path_params``
        override that.
        """

        def register(target: Callable[..., Any]) -> Callable[..., Any]:
            method_name = name or target.__name__
            if not _NAME_RE.match(method_name):
                raise ValueError(f"bad RPC method name {method_name!r} (public snake_case only)")
            full = f"{self.name}.{method_name}"
            if full in _METHODS and _METHODS[full].func is not target:
                raise ValueError(f"RPC method {full} registered twice")
            hints = typing.get_type_hints(target, include_extras=True)
            signature = inspect.signature(target)
            users = user_params if user_params is not None else _params_with(signature, hints, ActingUser, "user_id")
            paths = path_params if path_params is not None else _params_with(signature, hints, UserScopedPath, None)
            ceiling = min(timeout_ceiling_ms or settings.RPC_MAX_TIMEOUT_MS, settings.RPC_MAX_TIMEOUT_MS)
            scopes = _scopes(full, signature, hints, users, paths)
            _METHODS[full] = MethodSpec(
                namespace=self.name, name=method_name, func=target, writes=writes, repeatable=repeatable,
                script_write=script_write,
                timeout_ceiling_ms=ceiling,
                user_params=tuple(users), path_params=tuple(paths), signature=signature, hints=hints, scopes=scopes,
            )
            return target

        return register(func) if func is not None else register


def _scopes(
    full: str, signature: inspect.Signature, hints: dict[str, Any], users: list[str] | tuple[str, ...],
    paths: list[str] | tuple[str, ...],
) -> dict[str, Scope]:
    """Each parameter's scope marker; refuses markers that point at nothing (an id "in the user's tree" needs the
    user or a user path, a thread "within" its space needs that space argument)."""
    scopes: dict[str, Scope] = {}
    for name in signature.parameters:
        scope = ActingUser() if name in users else UserScopedPath() if name in paths else scope_of(hints.get(name))
        if scope is not None:
            scopes[name] = scope
    for name, scope in scopes.items():
        if isinstance(scope, InUserTree) and not (users or paths):
            raise ValueError(f"{full}: {name} is looked up in the user's tree, but no parameter names the user")
        if isinstance(scope, Within) and not isinstance(scopes.get(scope.container), Owned):
            raise ValueError(f"{full}: {name} lies in {scope.container!r}, which is not an Owned parameter")
    return scopes


def _params_with(signature: inspect.Signature, hints: dict[str, Any], marker: type, default_name: str | None) -> list[str]:
    found = []
    for param in signature.parameters.values():
        if any(isinstance(rule, marker) for rule in rules_of(hints.get(param.name))) or param.name == default_name:
            found.append(param.name)
    return found


def resolve(full_name: str) -> MethodSpec:
    spec = _METHODS.get(full_name)
    if spec is None:
        raise MethodNotFound(f"unknown method {full_name[:200]!r}")
    return spec


def all_methods() -> list[MethodSpec]:
    return [spec for _, spec in sorted(_METHODS.items())]


def namespaces() -> list[str]:
    return sorted({spec.namespace for spec in _METHODS.values()})


def autodiscover() -> None:
    """Import ``rpc_methods`` of every installed app; registering is a side effect of the import."""
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("rpc_methods")
