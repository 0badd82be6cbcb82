"""Argument types for RPC methods: plain type hints, checked without coercion before the call.

``Annotated`` markers add the rules the original never had::

    def get_job(user_id: UserId, job_id: DocId, limit: Annotated[int, Bounded(1, 500)] = 50) -> dict: ...

``UserId`` and ``UserPath`` parameters are also what tenant scoping looks at: they must name the envelope's user.
"""
from __future__ import annotations

import types
import typing
from collections import abc
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from core.errors import InvalidArgs

_CONTROL = {chr(c) for c in range(32)} | {"\x7f"}


@dataclass(frozen=True)
class Identifier:
    """A single path segment: no '/', no '..', no control characters, bounded length, not empty."""

    max_len: int = 256

    def check(self, name: str, value: str) -> None:
        if not value or len(value) > self.max_len:
            raise InvalidArgs(f"{name} must be 1..{self.max_len} characters")
        if "/" in value or value in {".", ".."} or ".." in value or _CONTROL & set(value):
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


@dataclass(frozen=True)
class ActingUser:
    """Marks a parameter that names a user: it must equal the envelope's ``user_id``."""

    def check(self, name: str, value: str) -> None:
        Identifier(128).check(name, value)


@dataclass(frozen=True)
class UserScopedPath:
    """A Firestore/RTDB path that must live under ``clients/{envelope user_id}/``."""

    max_len: int = 1024

    def check(self, name: str, value: str) -> None:
        segments = value.strip("/").split("/")
        if not value or len(value) > self.max_len or any(not s or s in {".", ".."} for s in segments):
            raise InvalidArgs(f"{name} must be a path of non-empty segments without '..'")
        if _CONTROL & set(value):
            raise InvalidArgs(f"{name} must not contain control characters")


DocId = Annotated[str, Identifier()]
UserId = Annotated[str, ActingUser()]
UserPath = Annotated[str, UserScopedPath()]


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
    if hint is Any or hint is object:
        return
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *rules = typing.get_args(hint)
        check_value(name, value, base)
        for rule in rules:
            if hasattr(rule, "check") and value is not None:
                rule.check(name, value)
        return
    if origin in (Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                check_value(name, value, option)
                return
            except InvalidArgs:
                continue
        raise InvalidArgs(f"{name} must be {_type_name(hint)}")
    if origin is Literal:
        # type() as well as ==: True == 1, but a Literal[1] parameter must not accept true
        if not any(type(value) is type(option) and value == option for option in typing.get_args(hint)):
            raise InvalidArgs(f"{name} must be one of {list(typing.get_args(hint))}")
        return
    if hint is type(None) or hint is None:
        if value is not None:
            raise InvalidArgs(f"{name} must be null")
        return
    if origin in _LIST_ORIGINS or hint in _LIST_ORIGINS:
        _check_items(name, value, origin or hint, typing.get_args(hint))
        return
    if origin in _DICT_ORIGINS or hint in _DICT_ORIGINS:
        if not isinstance(value, dict):
            raise InvalidArgs(f"{name} must be an object")
        args = typing.get_args(hint)
        if args:
            for key, item in value.items():
                check_value(f"{name}.{key}", key, args[0])
                check_value(f"{name}.{key}", item, args[1])
        return
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidArgs(f"{name} must be a number")
        return
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidArgs(f"{name} must be an integer")
        return
    if isinstance(hint, type) and not isinstance(value, hint):
        raise InvalidArgs(f"{name} must be {_type_name(hint)}")


def _check_items(name: str, value: Any, container: Any, item_hints: tuple[Any, ...]) -> None:
    if not isinstance(value, list):
        raise InvalidArgs(f"{name} must be a list")
    if container is tuple and item_hints and item_hints[-1] is not Ellipsis:
        if len(value) != len(item_hints):  # tuple[int, str]: fixed length, one hint per position
            raise InvalidArgs(f"{name} must have exactly {len(item_hints)} items")
        for index, (item, item_hint) in enumerate(zip(value, item_hints)):
            check_value(f"{name}[{index}]", item, item_hint)
        return
    if item_hints:  # list[X], set[X], tuple[X, ...]
        for index, item in enumerate(value):
            check_value(f"{name}[{index}]", item, item_hints[0])


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
