"""The batched fan-out message: one Redis PUBLISH carries one event for many users.

A company-wide notification to N users would otherwise be N pub/sub messages that every gateway process receives
and mostly discards. Instead the publisher's Lua script gives each recipient its own ``seq`` and history entry (so
``since`` recovery works exactly as for any event) and publishes ONE message on ``LISTENERS_FANOUT_CHANNEL``::

    {"v":1,"head":…,"middle":…,"tail":…,"event_id_base":…,"uids":["u1","u2",…],"seqs":[7,3,…]}

On a Redis Cluster each user's channel keys have their own slot, so the publisher appends per slot (one script per
slot, pipelined) and then PUBLISHes the same single message. Should some slots fail (a node restarting), the message
carries only the recipients already appended, with ``"idx":[…]``, their positions in the batch (their event ids are
``event_id_base`` + position); the others follow in their own message once their retry succeeds.

Every gateway process subscribes to that channel and builds, for each recipient that has sockets there, the same
envelope bytes that went into the recipient's history (``realtime/envelope.py``). A Redis subscriber of ``user:{uid}``
(the Reflex bus consumer) does not see this message on its own channel: it subscribes to the fan-out channel too and
reads its event from history (the client package does; see client/gateway_client/events.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

from .envelope import EnvelopeParts, uid_json

T = TypeVar("T")

FORMAT_VERSION = 1


def message_prefix(parts: EnvelopeParts, event_id_base: str, uids: list[str], positions: list[int] | None = None) -> str:
    """The message up to the seq list; the Lua script appends ``seq,seq,…]}`` once it has assigned them."""
    fields = {"v": FORMAT_VERSION, "head": parts.head, "middle": parts.middle, "tail": parts.tail,
              "event_id_base": event_id_base, "uids": uids}
    if positions is not None:
        fields["idx"] = positions
    return json.dumps(fields, separators=(",", ":"))[:-1] + ',"seqs":['


@dataclass(frozen=True)
class FanoutBatch:
    parts: EnvelopeParts
    event_id_base: str
    uids: list[str]
    seqs: list[int]
    positions: list[int] | None = None  # None: each recipient's position in the batch is its index here

    def envelopes(self, local: Callable[[str], T | None]) -> Iterator[tuple[T, bytes, int]]:
        """``(local(uid), envelope, seq)`` for each recipient whose ``local(uid)`` is truthy (its sockets here), in
        batch order. The envelope is the bytes ``EnvelopeParts.complete`` gives (those in the recipient's history):
        the fixed parts are encoded once per batch, and each recipient's envelope is one join of bytes."""
        head, middle, tail = (part.encode() for part in (self.parts.head, self.parts.middle, self.parts.tail))
        event_id_base = self.event_id_base.encode()
        positions = self.positions
        for index, uid in enumerate(self.uids):
            recipient = local(uid)
            if recipient:
                seq = self.seqs[index]
                position = index if positions is None else positions[index]
                # fanout_event_id's f"{base}{position:08x}" and complete's f"{seq}}}", as bytes
                yield recipient, b"".join((head, uid_json(uid).encode(), middle, event_id_base, b"%08x" % position,
                                           tail, b"%d}" % seq)), seq


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
        positions = data.get("idx")
        if positions is not None and not (
            isinstance(positions, list) and len(positions) == len(uids) and all(type(p) is int for p in positions)
        ):
            return None
        return FanoutBatch(parts, str(data["event_id_base"]), uids, seqs, positions)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
