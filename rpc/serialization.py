"""JSON-safe results: what Firestore and Python hand back becomes what the contract promises.

Datetimes (Firestore ``DatetimeWithNanoseconds`` included) become ISO-8601 UTC with ``Z``; bytes become base64;
document references become their path; GeoPoints an object; Decimals a string (exact). Anything else unknown is a
programming error and surfaces as INTERNAL rather than as a half-serialised response.
"""
from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import uuid
from typing import Any


def iso_utc(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    text = value.astimezone(dt.timezone.utc).isoformat()
    return text.replace("+00:00", "Z")


def json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return iso_utc(value)
    if isinstance(value, dt.date):
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
    """Compact, deterministic-enough JSON bytes (ASCII-escaped so no charset ambiguity on the wire)."""
    return json.dumps(value, default=json_default, separators=(",", ":")).encode("ascii")


def canonical(value: Any) -> bytes:
    """Canonical form for fingerprints: sorted keys, compact, same default conversions."""
    return json.dumps(value, default=json_default, sort_keys=True, separators=(",", ":")).encode("utf-8")
