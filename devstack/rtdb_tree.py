"""Data model of the Realtime Database stand-in: JSON trees, queries, ETags and push ids.

Trees are persistent: a write copies the dicts along its path and never mutates a node in
place. Any node read earlier therefore stays a valid snapshot, which lets the server compare a
location before and after a write (to decide which listeners get which event) without copying
whole subtrees.
"""
from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

Json = Any
Path = tuple[str, ...]

MAX_DEPTH = 32  # RTDB's own nesting limit; also keeps the recursive helpers far from Python's.
_BAD_KEY_CHARS = re.compile(r"[.$#\[\]/\x00-\x1f\x7f]")
# RTDB orders keys that are canonical 32-bit integers numerically, before all other keys.
_INT_KEY = re.compile(r"-?(0|[1-9][0-9]{0,9})")
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")
_PUSH_CHARS = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"


class BadRequest(ValueError):
    """A client error; the server answers 400 with ``{"error": message}``."""


# --- keys, paths and values -------------------------------------------------------------------

def check_key(key: str) -> str:
    if not key or _BAD_KEY_CHARS.search(key) or len(key.encode("utf-8")) > 768:
        raise BadRequest(
            f"Invalid key: {key!r}. Keys must be non-empty strings and can't contain "
            "\".\", \"#\", \"$\", \"/\", \"[\", \"]\" or control characters")
    return key


def parse_path(text: str) -> Path:
    """Splits ``a/b/c`` into segments; empty segments are dropped, as the SDK does."""
    path = tuple(check_key(seg) for seg in text.split("/") if seg)
    if len(path) > MAX_DEPTH:
        raise BadRequest("Path is too deep")
    return path


def parse_json(raw: bytes) -> Json:
    def reject_constant(name: str) -> None:
        raise ValueError(name)  # NaN and Infinity are not JSON, though Python accepts them.

    try:
        return json.loads(raw.decode("utf-8"), parse_constant=reject_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRequest("Invalid data; couldn't parse JSON object, array, or value.") from exc


def normalize(value: Json, depth: int = 0) -> Json:
    """Converts a client value to stored form: arrays become objects keyed by index, and nulls and
    empty objects vanish (RTDB never stores them). Returns None when nothing is left."""
    if depth > MAX_DEPTH:
        raise BadRequest("Data is nested too deeply")
    if isinstance(value, list):
        value = {str(i): v for i, v in enumerate(value)}
    if isinstance(value, dict):
        children = {}
        for key, child in value.items():
            stored = normalize(child, depth + 1)
            if stored is not None:
                children[check_key(key)] = stored
        return children or None
    return value


def export(value: Json) -> Json:
    """Stored form → wire form: an object whose keys are array indices becomes an array when more
    than half of the slots 0..max are filled, as RTDB does."""
    if not isinstance(value, dict):
        return value
    out = {key: export(child) for key, child in value.items()}
    if all(_ARRAY_INDEX.fullmatch(key) for key in out):
        size = max(int(key) for key in out) + 1
        if len(out) * 2 > size:
            return [out.get(str(i)) for i in range(size)]
    return out


def same(a: Json, b: Json) -> bool:
    """JSON equality; unlike ``==`` it keeps ``true`` apart from ``1``."""
    if a is b:
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, bool) or isinstance(b, bool):
        return False  # True and False are singletons, so `is` above already matched equal ones
    if _is_number(a) and _is_number(b):
        return a == b  # 1 and 1.0 are the same JSON number
    return type(a) is type(b) and a == b


def etag(value: Json) -> str:
    canonical = json.dumps(export(value), sort_keys=True, separators=(",", ":"))
    return base64.b64encode(hashlib.sha1(canonical.encode()).digest()).decode()


def get_at(node: Json, path: Path) -> Json:
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def set_at(node: Json, path: Path, value: Json) -> Json:
    """Returns a copy of ``node`` with ``value`` (stored form, None = delete) at ``path``.
    Untouched subtrees are shared, and an unchanged node is returned as the same object."""
    if not path:
        return value
    if not isinstance(node, dict):
        if value is None:
            return node
        node = {}  # writing below a primitive replaces it, as in RTDB
    head = path[0]
    old_child = node.get(head)
    new_child = set_at(old_child, path[1:], value)
    if new_child is old_child:
        return node
    children = dict(node)
    if new_child is None:
        del children[head]
    else:
        children[head] = new_child
    return children or None


def shallow(value: Json) -> Json:
    if isinstance(value, dict):
        return {key: True for key in value}
    return value


def parse_update(body: Json) -> list[tuple[Path, Json]]:
    """Validates a PATCH body: keys are relative paths that must not overlap."""
    if not isinstance(body, dict) or not body:
        raise BadRequest("Invalid data; couldn't parse JSON object. Are you sending a JSON object "
                         "with valid key names?")
    entries = [(parse_path(key), normalize(value, 1)) for key, value in body.items()]
    paths = sorted(path for path, _ in entries)
    if not paths[0]:
        raise BadRequest("Invalid data; an update key must not be empty")
    for shorter, longer in zip(paths, paths[1:]):
        if longer[:len(shorter)] == shorter:
            raise BadRequest(f"Invalid data; path '{'/'.join(shorter)}' overlaps "
                             f"'{'/'.join(longer)}' in the update")
    return entries


# --- queries ---------------------------------------------------------------------------------

def _is_number(value: Json) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def index_rank(value: Json) -> tuple:
    """Sort key of an index value: null < false < true < numbers < strings < objects."""
    if value is None:
        return (0,)
    if value is False:
        return (1,)
    if value is True:
        return (2,)
    if _is_number(value):
        return (3, value)
    if isinstance(value, str):
        return (4, value)
    return (5,)  # all objects tie; the key decides


def key_rank(key: str) -> tuple:
    if _INT_KEY.fullmatch(key) and -2**31 <= int(key) < 2**31:
        return (0, int(key))
    return (1, key)


@dataclass(frozen=True)
class Query:
    order_by: str  # "$key", "$value", "$priority" or a child path "a/b"
    start: Optional[tuple] = None  # ranks (see index_rank / key_rank) of the bounds
    end: Optional[tuple] = None
    first: Optional[int] = None
    last: Optional[int] = None

    @property
    def filters(self) -> bool:
        return (self.start, self.end, self.first, self.last) != (None,) * 4

    def run(self, value: Json) -> Json:
        if not isinstance(value, dict):
            # A leaf has no children: ordering alone leaves it as it is, any filter empties it.
            return None if self.filters else value
        rank = self._ranker()
        ranked = sorted((rank(key, child), key) for key, child in value.items())
        kept = [key for r, key in ranked
                if (self.start is None or r[0] >= self.start) and (self.end is None or r[0] <= self.end)]
        if self.first is not None:
            kept = kept[:self.first]
        if self.last is not None:
            kept = kept[max(0, len(kept) - self.last):]
        return {key: value[key] for key in kept} or None

    def _ranker(self) -> Callable[[str, Json], tuple]:
        if self.order_by == "$key":
            return lambda key, child: (key_rank(key),)
        if self.order_by == "$value":
            return lambda key, child: (index_rank(child), key_rank(key))
        if self.order_by == "$priority":  # priorities are not stored: all null, so by key
            return lambda key, child: (index_rank(None), key_rank(key))
        path = tuple(self.order_by.split("/"))
        return lambda key, child: (index_rank(get_at(child, path)), key_rank(key))


QUERY_PARAMS = ("orderBy", "startAt", "endAt", "equalTo", "limitToFirst", "limitToLast")


def parse_query(params: dict[str, str]) -> Optional[Query]:
    """Builds a Query from the (already %-decoded) REST parameters; None if there is none."""
    if not any(name in params for name in QUERY_PARAMS):
        return None
    if "orderBy" not in params:
        raise BadRequest("orderBy must be defined when other query parameters are defined")
    order_by = _parse_order_by(params["orderBy"])
    if "limitToFirst" in params and "limitToLast" in params:
        raise BadRequest("Only one of limitToFirst and limitToLast may be specified")
    if "equalTo" in params and ("startAt" in params or "endAt" in params):
        raise BadRequest("equalTo cannot be combined with startAt or endAt")
    start = _bound(params, "startAt", order_by) or _bound(params, "equalTo", order_by)
    end = _bound(params, "endAt", order_by) or _bound(params, "equalTo", order_by)
    return Query(order_by, start, end, _limit(params, "limitToFirst"), _limit(params, "limitToLast"))


def _parse_order_by(raw: str) -> str:
    try:
        order_by = json.loads(raw)
    except ValueError:
        order_by = None
    if not isinstance(order_by, str) or not order_by:
        raise BadRequest("orderBy must be a valid JSON encoded path")
    if order_by in ("$key", "$value", "$priority"):
        return order_by
    path = parse_path(order_by)
    if not path:
        raise BadRequest("orderBy must be a valid JSON encoded path")
    return "/".join(path)


def _bound(params: dict[str, str], name: str, order_by: str) -> Optional[tuple]:
    if name not in params:
        return None
    try:
        value = json.loads(params[name])
    except ValueError as exc:
        raise BadRequest(f"{name} must be a valid JSON value") from exc
    if order_by == "$key":
        if not isinstance(value, str):
            raise BadRequest(f"{name} must be a string when orderBy is $key")
        return key_rank(value)
    if isinstance(value, (dict, list)):
        raise BadRequest(f"{name} must be a JSON primitive")
    return index_rank(value)


def _limit(params: dict[str, str], name: str) -> Optional[int]:
    if name not in params:
        return None
    if not params[name].isdigit():
        raise BadRequest(f"{name} must be a non-negative integer")
    return int(params[name])


# --- push ids --------------------------------------------------------------------------------

class PushIds:
    """Firebase push ids: 8 chars of millisecond time + 12 random chars, in an alphabet whose
    ASCII order matches its digit order. Within one millisecond the random part is incremented
    instead of redrawn, so ids always increase in creation order."""

    def __init__(self) -> None:
        self._last_ms = 0
        self._rand: list[int] = []

    def next(self) -> str:
        now = max(int(time.time() * 1000), self._last_ms)  # never go back if the clock does
        if now != self._last_ms or not self._increment_rand():
            if now == self._last_ms:
                now += 1  # the 12 random digits overflowed within this millisecond
            self._rand = [random.randrange(64) for _ in range(12)]
        self._last_ms = now
        stamp = "".join(_PUSH_CHARS[(now >> (6 * i)) & 63] for i in range(7, -1, -1))
        return stamp + "".join(_PUSH_CHARS[d] for d in self._rand)

    def _increment_rand(self) -> bool:
        for i in range(11, -1, -1):
            if self._rand[i] < 63:
                self._rand[i] += 1
                return True
            self._rand[i] = 0
        return False
