"""REGISTRY.* — sessions, presence tokens and the health no-op."""
from __future__ import annotations

from rpc.registry import Namespace

ns = Namespace("REGISTRY")


@ns.method(writes=False)
def ping() -> dict[str, bool]:
    """No-op for health checks and benchmarks: proves auth, envelope, registry and execution end to end."""
    return {"pong": True}
