"""The event envelope as bytes, built so that Redis (Lua) and the WebSocket dispatcher can finish it without parsing.

An envelope is ``{"type","uid","timestamp","payload","event_id"[,"job_id"][,"trace_id"],"seq"}`` (contract §2). Only
``uid``, ``event_id`` and ``seq`` differ between the recipients of one fan-out, so an event is kept as three fixed
parts around them::

    head + json(uid) + middle + event_id + tail + seq + "}"

A single publish joins everything but ``seq`` in Python and lets the Lua script append it. A fan-out sends the parts
once, with the recipients' uids, and each Lua iteration / each gateway process assembles one recipient's envelope.
Both paths give byte-identical envelopes for the same event, and the same bytes as ``json.dumps`` of the whole dict.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import Any

from core.logging import current_trace_id
from core.serialization import json_default


def utc_now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dumps(value: Any) -> str:
    return json.dumps(value, default=json_default, separators=(",", ":"))


def uid_json(uid: str) -> str:
    # What _dumps gives for a str (json's default ensure_ascii), without building an encoder per call: it runs once
    # per recipient of a fan-out, in the publisher and in every gateway process.
    return encode_basestring_ascii(uid)


@dataclass(frozen=True)
class EnvelopeParts:
    head: str  # '{"type":"notif.sync","uid":'
    middle: str  # ',"timestamp":"…","payload":{…},"event_id":"'
    tail: str  # '"' + optional job_id / trace_id members + ',"seq":'

    @classmethod
    def build(cls, event_type: str, payload: dict[str, Any], job_id: str | None = None) -> "EnvelopeParts":
        head = '{"type":' + _dumps(event_type) + ',"uid":'
        middle = ',"timestamp":' + _dumps(utc_now_iso()) + ',"payload":' + _dumps(payload) + ',"event_id":"'
        tail = '"'
        if job_id is not None:
            tail += ',"job_id":' + _dumps(job_id)
        trace_id = current_trace_id()
        if trace_id:
            tail += ',"trace_id":' + _dumps(trace_id)
        return cls(head, middle, tail + ',"seq":')

    def without_seq(self, uid: str, event_id: str) -> str:
        """Everything up to the seq digits; the publisher's Lua appends ``seq + "}"``."""
        return self.head + uid_json(uid) + self.middle + event_id + self.tail

    def complete(self, uid: str, event_id: str, seq: int) -> str:
        return f"{self.without_seq(uid, event_id)}{seq}}}"


def fanout_event_id(base: str, index: int) -> str:
    """Recipient ``index``'s event id: unique per recipient, derivable from the batch without sending each one."""
    return f"{base}{index:08x}"
