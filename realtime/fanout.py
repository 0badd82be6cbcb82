"""The batched fan-out message: one Redis PUBLISH carries one event for many users.

A company-wide notification to N users would otherwise be N pub/sub messages that every gateway process receives
and mostly discards. Instead the publisher's Lua script gives each recipient its own ``seq`` and history entry (so
``since`` recovery works exactly as for any event) and publishes ONE message on ``LISTENERS_FANOUT_CHANNEL``::

    {"v":1,"head":…,"middle":…,"tail":…,"event_id_base":…,"uids":["u1","u2",…],"seqs":[7,3,…]}

Every gateway process subscribes to that channel and builds, for each recipient that has sockets there, the same
envelope bytes that went into the recipient's history (``realtime/envelope.py``). A Redis subscriber of ``user:{uid}``
(the Reflex bus consumer) does not see this message on its own channel: it subscribes to the fan-out channel too and
reads its event from history (the client package does; see client/gateway_client/events.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterator

from .envelope import EnvelopeParts, fanout_event_id

FORMAT_VERSION = 1


def message_prefix(parts: EnvelopeParts, event_id_base: str, uids: list[str]) -> str:
    """The message up to the seq list; the Lua script appends ``seq,seq,…]}`` once it has assigned them."""
    body = json.dumps(
        {"v": FORMAT_VERSION, "head": parts.head, "middle": parts.middle, "tail": parts.tail,
         "event_id_base": event_id_base, "uids": uids},
        separators=(",", ":"),
    )
    return body[:-1] + ',"seqs":['


@dataclass(frozen=True)
class FanoutBatch:
    parts: EnvelopeParts
    event_id_base: str
    uids: list[str]
    seqs: list[int]

    def envelope_for(self, index: int) -> bytes:
        uid = self.uids[index]
        return self.parts.complete(uid, fanout_event_id(self.event_id_base, index), self.seqs[index]).encode()

    def indexes(self) -> Iterator[tuple[int, str]]:
        return enumerate(self.uids)


def decode(message: bytes | str) -> FanoutBatch | None:
    """None for anything that is not a well-formed batch of this version (logged by the caller, never raised)."""
    try:
        data = json.loads(message)
        if data.get("v") != FORMAT_VERSION:
            return None
        parts = EnvelopeParts(str(data["head"]), str(data["middle"]), str(data["tail"]))
        uids, seqs = data["uids"], data["seqs"]
        if not (isinstance(uids, list) and isinstance(seqs, list) and len(uids) == len(seqs)):
            return None
        if not all(isinstance(u, str) for u in uids) or not all(type(s) is int for s in seqs):
            return None
        return FanoutBatch(parts, str(data["event_id_base"]), uids, seqs)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
