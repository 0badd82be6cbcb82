"""Argument types shared by the FIREBASE_MANAGEMENT / FIREBASE_REALTIME methods (checked by the registry before a call)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from core.errors import InvalidArgs
from rpc.types import Bounded, Identifier, InUserTree, MaxLen, OwnDocId, OwnSpace, ReachableUser, Within

# Characters the Realtime Database refuses in a key (besides '/' and control characters, which Identifier rejects).
_RTDB_FORBIDDEN = frozenset(".$#[]")


@dataclass(frozen=True)
class RtdbKeyRule:
    """One Realtime Database path segment: an Identifier that RTDB also accepts as a key."""

    max_len: int = 128

    def check(self, name: str, value: str) -> None:
        Identifier(self.max_len).check(name, value)
        if _RTDB_FORBIDDEN & set(value):
            raise InvalidArgs(f"{name} must not contain any of . $ # [ ]")


@dataclass(frozen=True)
class FirestoreDepth:
    """Firestore refuses a document whose maps and arrays nest deeper than 20 levels; say so before writing, as a
    caller error, instead of failing inside the write."""

    max_depth: int = 20

    def check(self, name: str, value: dict) -> None:
        pending: list[tuple[object, int]] = [(field, 1) for field in value.values()]
        while pending:  # iterative: a hostile body nested thousands deep must not exhaust the stack
            item, depth = pending.pop()
            children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
            if children is None:
                continue
            if depth > self.max_depth:
                raise InvalidArgs(f"{name} nests maps or arrays deeper than Firestore accepts ({self.max_depth})")
            pending.extend((child, depth + 1) for child in children)


# RTDB keys, each with its scope (rpc/types.py, "scope markers"): a space of the acting user, a thread in it, a key of the user's own
# inbox, a user the acting user may message.
SpaceCode = Annotated[str, RtdbKeyRule(), OwnSpace]
ThreadKey = Annotated[str, RtdbKeyRule(), Within("space_code")]
OwnRtdbKey = Annotated[str, RtdbKeyRule(), InUserTree()]
RecipientId = Annotated[str, RtdbKeyRule(), ReachableUser]
ChatMode = Literal["chats", "job_chats"]
ShortText = Annotated[str, MaxLen(200)]
LongText = Annotated[str, MaxLen(200_000)]
# Identifier lists are bounded so one call always fits in one Firestore batch (500 writes).
DocIdList = Annotated[list[OwnDocId], MaxLen(500)]
Limit = Annotated[int, Bounded(1, 500)]
Payload = Annotated[dict, MaxLen(500), FirestoreDepth()]
