"""JSON in and out of the gateway: strict parsing, JSON-safe results.

Parsing is RFC 8259 strict (orjson): no NaN/Infinity, valid UTF-8 only (no lone surrogates), nesting depth ≤ 1024.
Integers beyond the 64-bit range are read as floats, like most JSON stacks do.

Results: datetimes (Firestore ``DatetimeWithNanoseconds`` included) become ISO-8601 UTC with ``Z``, naive ones are
taken as UTC; bytes become base64; document references become their path; GeoPoints an object; Decimals a string
(exact); sets a list; NaN/Infinity null. Anything else unknown is a programming error and surfaces as INTERNAL rather
than as a half-serialised response.
"""
from __future__ import annotations

import base64
import datetime as dt
import decimal
import uuid
from typing import Any

import orjson

# Every datetime goes through json_default, so all of them get the same UTC conversion (orjson alone would keep a
# non-UTC offset and does not know datetime subclasses).
_DUMPS_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS
_CANONICAL_OPTIONS = _DUMPS_OPTIONS | orjson.OPT_SORT_KEYS


def iso_utc(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    text = value.astimezone(dt.timezone.utc).isoformat()
    return text.replace("+00:00", "Z")


def json_default(value: Any) -> Any:
    """Conversions for values JSON has no type for (usable with ``json.dumps(default=...)`` too)."""
    if isinstance(value, dt.datetime):
        return iso_utc(value)
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    path = getattr(value, "path", None)
    if path is not None and type(value).__name__ in {"DocumentReference", "AsyncDocumentReference"}:
        return path
    if type(value).__name__ == "GeoPoint":
        return {"latitude": value.latitude, "longitude": value.longitude}
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON bytes. Raises TypeError (orjson.JSONEncodeError) for values it cannot represent."""
    return orjson.dumps(value, default=json_default, option=_DUMPS_OPTIONS)


def canonical(value: Any) -> bytes:
    """Canonical form for fingerprints: sorted keys, compact, same conversions."""
    return orjson.dumps(value, default=json_default, option=_CANONICAL_OPTIONS)


def loads(data: bytes | str) -> Any:
    """Strict JSON parsing; raises ValueError (orjson.JSONDecodeError) on anything RFC 8259 does not allow."""
    return orjson.loads(data)
