"""Argument types for RPC methods: plain type hints, checked without coercion before the call.

``Annotated`` markers add the rules the original never had::

    def get_job(user_id: UserId, job_id: DocId, limit: Annotated[int, Bounded(1, 500)] = 50) -> dict: ...

Every argument that names tenant data (a user, a path, a space, a session, a collection, a thread, a document id)
carries a **scope marker** saying how it belongs to the envelope's user; the registry checks it before the call
(README, "Security", rule 3), and tests/security/test_scope_declarations.py fails for a method that takes such an
argument without one:

* ``ActingUser`` (``UserId``): equals the envelope ``user_id``.
* ``UserScopedPath`` (``UserPath``): lies under ``clients/{envelope user_id}/``.
* ``InUserTree`` (``OwnDocId``): an id the method only ever looks up among the acting user's own data, addressed by
  the method's ``UserId`` or ``UserPath`` argument (registration refuses the marker on a method with neither).
* ``Owned(resolve)``: ``resolve(acting_user, value)`` runs before the call, off the event loop (it may read Firestore,
  Redis or Chroma) and raises PERMISSION_DENIED/NOT_FOUND: ``OwnSpace`` (``core.tenancy``), Chroma collections.
* ``Within(param)``: a key inside the container named by another, ``Owned`` argument (a chat thread in its space,
  a document id in its Chroma collection).
* ``Public(reason)``: not tenant data (reference data ids, a label, an index); the reason is the review's record.
"""
from __future__ import annotations

import re
import types
import typing
from collections import abc
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal, Union

from core import tenancy
from core.errors import InvalidArgs

_CONTROL_RE = re.compile("[\x00-\x1f\x7f]")  # control characters, searched in C: this runs for every id argument


@dataclass(frozen=True)
class Identifier:
    """A single path segment: no '/', no '..', no control characters, bounded length, not empty."""

    max_len: int = 256

    def check(self, name: str, value: str) -> None:
        if not value or len(value) > self.max_len:
            raise InvalidArgs(f"{name} must be 1..{self.max_len} characters")
        if "/" in value or value == "." or ".." in value or _CONTROL_RE.search(value):
            raise InvalidArgs(f"{name} must not contain '/', '..' or control characters")


@dataclass(frozen=True)
class Bounded:
    low: float
    high: float

    def check(self, name: str, value: float) -> None:
        if not self.low <= value <= self.high:
            raise InvalidArgs(f"{name} must be between {self.low:g} and {self.high:g}")


@dataclass(frozen=True)
class MaxLen:
    """Bounds the length of a string, list or dict argument."""

    high: int

    def check(self, name: str, value: Any) -> None:
        if len(value) > self.high:
            raise InvalidArgs(f"{name} must have at most {self.high} items/characters")


class Scope:
    """Base of the scope markers: how an argument naming tenant data belongs to the envelope's user."""


@dataclass(frozen=True)
class ActingUser(Scope):
    """Marks a parameter that names a user: it must equal the envelope's ``user_id``."""

    def check(self, name: str, value: str) -> None:
        _USER_ID.check(name, value)


_USER_ID = Identifier(128)


@dataclass(frozen=True)
class UserScopedPath(Scope):
    """A Firestore/RTDB path that must live under ``clients/{envelope user_id}/``."""

    max_len: int = 1024

    def check(self, name: str, value: str) -> None:
        segments = value.strip("/").split("/")
        if not value or len(value) > self.max_len or any(not s or s in {".", ".."} for s in segments):
            raise InvalidArgs(f"{name} must be a path of non-empty segments without '..'")
        if _CONTROL_RE.search(value):
            raise InvalidArgs(f"{name} must not contain control characters")


@dataclass(frozen=True)
class InUserTree(Scope):
    """An id looked up only among the acting user's own data (its method's ``UserId``/``UserPath`` says whose)."""


@dataclass(frozen=True)
class Owned(Scope):
    """``resolve(acting_user, value)`` decides, before the call, whether the value is the acting user's (raising
    PERMISSION_DENIED or NOT_FOUND). Not called ``check``: that name is the value rules' hook in ``check_value``."""

    resolve: Callable[[str, Any], None]
    what: str


@dataclass(frozen=True)
class Within(Scope):
    """A key inside the container named by the ``container`` argument (itself ``Owned``): a thread in its space."""

    container: str


@dataclass(frozen=True)
class Public(Scope):
    """Not tenant data; ``reason`` says why (reviewed in tests/security/test_scope_declarations.py)."""

    reason: str


DocId = Annotated[str, Identifier()]
UserId = Annotated[str, ActingUser()]
UserPath = Annotated[str, UserScopedPath()]
OwnDocId = Annotated[str, Identifier(), InUserTree()]
OwnSpace = Owned(tenancy.require_own_space, "space")
ReachableUser = Owned(tenancy.require_reachable_user, "reachable_user")


def scope_of(hint: Any) -> Scope | None:
    """The scope marker of a hint, looking inside Optional/Union options and list items (an id list's items)."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *rules = typing.get_args(hint)
        found = next((rule for rule in rules if isinstance(rule, Scope)), None)
        return found or scope_of(base)
    if origin in (Union, types.UnionType) or origin in _LIST_ORIGINS:
        for option in typing.get_args(hint):
            found = scope_of(option)
            if found is not None:
                return found
    return None


def path_owner(path: str) -> str | None:
    """The uid a ``clients/{uid}/...`` path belongs to, or None when it is not under ``clients/``."""
    segments = path.strip("/").split("/")
    if len(segments) >= 2 and segments[0] == "clients":
        return segments[1]
    return None


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


_LIST_ORIGINS = (list, tuple, set, frozenset, abc.Sequence, abc.Iterable, abc.Collection, abc.Set)
_DICT_ORIGINS = (dict, abc.Mapping)


def check_value(name: str, value: Any, hint: Any) -> None:
    """Raise InvalidArgs unless ``value`` matches ``hint`` exactly (no coercion: "5" is not an int).

    JSON arrays satisfy list/tuple/set/Sequence hints (the method receives the list as sent); JSON objects satisfy
    dict/Mapping hints. A hint this checker has no rule for (a plain class that JSON never produces) must be matched
    by ``isinstance``, so such a parameter can only take its default.
    """
    checker_for(hint)(name, value)


Checker = Callable[[str, Any], None]


def _no_check(name: str, value: Any) -> None:
    return None


def checker_for(hint: Any) -> Checker:
    """``check_value`` for one hint, decided once: taking the hint apart (get_origin, get_args) on every call was
    most of the cost of binding a call's arguments. The registry keeps one per parameter (rpc.registry.MethodSpec)."""
    if hint is Any or hint is object:
        return _no_check
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *annotations = typing.get_args(hint)
        check_base = checker_for(base)
        rules = tuple(rule for rule in annotations if hasattr(rule, "check"))

        def check_annotated(name: str, value: Any) -> None:
            check_base(name, value)
            if value is not None:
                for rule in rules:
                    rule.check(name, value)
        return check_annotated
    if origin in (Union, types.UnionType):
        options = tuple(checker_for(option) for option in typing.get_args(hint))

        def check_union(name: str, value: Any) -> None:
            for check_option in options:
                try:
                    check_option(name, value)
                    return
                except InvalidArgs:
                    continue
            raise InvalidArgs(f"{name} must be {_type_name(hint)}")
        return check_union
    if origin is Literal:
        allowed = typing.get_args(hint)

        def check_literal(name: str, value: Any) -> None:
            # type() as well as ==: True == 1, but a Literal[1] parameter must not accept true
            if not any(type(value) is type(option) and value == option for option in allowed):
                raise InvalidArgs(f"{name} must be one of {list(allowed)}")
        return check_literal
    if hint is type(None) or hint is None:
        def check_null(name: str, value: Any) -> None:
            if value is not None:
                raise InvalidArgs(f"{name} must be null")
        return check_null
    if origin in _LIST_ORIGINS or hint in _LIST_ORIGINS:
        return _items_checker(origin or hint, typing.get_args(hint))
    if origin in _DICT_ORIGINS or hint in _DICT_ORIGINS:
        pair = tuple(checker_for(part) for part in typing.get_args(hint))

        def check_object(name: str, value: Any) -> None:
            if not isinstance(value, dict):
                raise InvalidArgs(f"{name} must be an object")
            if pair:
                for key, item in value.items():
                    pair[0](f"{name}.{key}", key)
                    pair[1](f"{name}.{key}", item)
        return check_object
    if hint is float:
        def check_number(name: str, value: Any) -> None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidArgs(f"{name} must be a number")
        return check_number
    if hint is int:
        def check_integer(name: str, value: Any) -> None:
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidArgs(f"{name} must be an integer")
        return check_integer
    if isinstance(hint, type):
        def check_instance(name: str, value: Any) -> None:
            if not isinstance(value, hint):
                raise InvalidArgs(f"{name} must be {_type_name(hint)}")
        return check_instance
    return _no_check


def _items_checker(container: Any, item_hints: tuple[Any, ...]) -> Checker:
    if container is tuple and item_hints and item_hints[-1] is not Ellipsis:
        positions = tuple(checker_for(item_hint) for item_hint in item_hints)

        def check_fixed(name: str, value: Any) -> None:
            if not isinstance(value, list):
                raise InvalidArgs(f"{name} must be a list")
            if len(value) != len(positions):  # tuple[int, str]: fixed length, one hint per position
                raise InvalidArgs(f"{name} must have exactly {len(positions)} items")
            for index, (item, check_item) in enumerate(zip(value, positions)):
                check_item(f"{name}[{index}]", item)
        return check_fixed
    check_each = checker_for(item_hints[0]) if item_hints else None  # list[X], set[X], tuple[X, ...]

    def check_items(name: str, value: Any) -> None:
        if not isinstance(value, list):
            raise InvalidArgs(f"{name} must be a list")
        if check_each is not None:
            for index, item in enumerate(value):
                check_each(f"{name}[{index}]", item)
    return check_items


def rules_of(hint: Any) -> list[Any]:
    """The Annotated markers of a hint, looking inside Optional[...] too."""
    if typing.get_origin(hint) is Annotated:
        return list(typing.get_args(hint)[1:])
    if typing.get_origin(hint) in (Union, types.UnionType):
        found: list[Any] = []
        for option in typing.get_args(hint):
            found.extend(rules_of(option))
        return found
    return []
