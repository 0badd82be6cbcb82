"""The gateway's method catalogue (``GET /rpc/methods``): which methods exist, which write, which name a user."""
from __future__ import annotations

import difflib
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .errors import ProtocolError, UnknownMethod


@dataclass(frozen=True)
class MethodInfo:
    name: str  # NAMESPACE.method
    writes: bool  # True: the gateway requires an idempotency_key
    params: tuple[Mapping[str, Any], ...]
    scoped_by: tuple[str, ...]  # arguments that must name the envelope's user (a uid or a clients/{uid}/ path)
    doc: str

    @property
    def namespace(self) -> str:
        return self.name.partition(".")[0]

    def acting_user(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str | None:
        """The user the scoped arguments of this call name (a uid, or the ``{uid}`` of ``clients/{uid}/...``).

        Lets an unbound proxy fill the envelope's user_id the way the original service never needed; the gateway
        still checks every scoped argument against it.
        """
        positional = [p["name"] for p in self.params if p.get("kind") in ("positional_only", "positional_or_keyword")]
        for name in self.scoped_by:
            if name in kwargs:
                value = kwargs[name]
            elif name in positional and positional.index(name) < len(args):
                value = args[positional.index(name)]
            else:
                continue
            if isinstance(value, str) and value:
                return _owner(value)
        return None


def _owner(value: str) -> str | None:
    if "/" not in value:
        return value  # a user id (the gateway refuses '/' in one)
    segments = value.strip("/").split("/")
    return segments[1] if len(segments) >= 2 and segments[0] == "clients" else None


class Catalogue:
    def __init__(self, methods: Mapping[str, MethodInfo]) -> None:
        self.methods = dict(methods)
        self.fetched_at = time.monotonic()

    @classmethod
    def from_response(cls, data: Any) -> "Catalogue":
        entries = data.get("methods") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise ProtocolError("GET /rpc/methods did not return {methods: [...]}")
        methods = {}
        for entry in entries:
            info = MethodInfo(
                name=entry["method"],
                writes=bool(entry.get("writes")),
                params=tuple(entry.get("params") or ()),
                scoped_by=tuple(entry.get("scoped_by") or ()),
                doc=entry.get("doc") or "",
            )
            methods[info.name] = info
        return cls(methods)

    def age_s(self) -> float:
        return time.monotonic() - self.fetched_at

    def get(self, name: str) -> MethodInfo | None:
        return self.methods.get(name)

    def names(self, namespace: str) -> list[str]:
        prefix = namespace + "."
        return sorted(name[len(prefix):] for name in self.methods if name.startswith(prefix))

    def require(self, name: str) -> MethodInfo:
        info = self.methods.get(name)
        if info is not None:
            return info
        namespace, _, short = name.partition(".")
        candidates = self.names(namespace)
        close = difflib.get_close_matches(short, candidates, n=3)
        if not candidates:
            hint = f"the gateway lists no {namespace}.* method for this token"
        elif close:
            hint = "did you mean " + ", ".join(close) + "?"
        else:
            hint = f"{len(candidates)} {namespace}.* methods are listed (see GET /rpc/methods)"
        raise UnknownMethod(f"the gateway does not list {name}; {hint}", method=name)
