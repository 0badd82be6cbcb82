"""Argument types for RPC methods: plain type hints, checked without coercion before the call.

``Annotated`` markers add the rules the original never had::

    def get_job(user_id: UserId, job_id: DocId, limit: Annotated[int, Bounded(1, 500)] = 50) -> dict: ...

``UserId`` and ``UserPath`` parameters are also what tenant scoping looks at: they must name the envelope's user.
"""
from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from .errors import InvalidArgs

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


def check_value(name: str, value: Any, hint: Any) -> None:
    """Raise InvalidArgs unless ``value`` matches ``hint`` exactly (no coercion: "5" is not an int)."""
    if hint is Any:
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
        if value not in typing.get_args(hint):
            raise InvalidArgs(f"{name} must be one of {list(typing.get_args(hint))}")
        return
    if hint is type(None) or hint is None:
        if value is not None:
            raise InvalidArgs(f"{name} must be null")
        return
    if origin in (list, tuple, set, frozenset) or hint in (list, tuple):
        if not isinstance(value, list):
            raise InvalidArgs(f"{name} must be a list")
        item_hints = typing.get_args(hint)
        if item_hints and item_hints[-1] is not Ellipsis:
            for index, item in enumerate(value):
                check_value(f"{name}[{index}]", item, item_hints[0])
        return
    if origin is dict or hint is dict:
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
    if isinstance(hint, type):
        if not isinstance(value, hint):
            raise InvalidArgs(f"{name} must be {_type_name(hint)}")
        return


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
