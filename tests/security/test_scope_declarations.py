"""Rule 3 (README, "Security"): every registered method declares, in its signature, how each argument naming tenant
data belongs to the acting user. This fails for any method, in any namespace, that takes a path, space, session,
collection, thread or document id without a scope marker (rpc/types.py)."""
from __future__ import annotations

import inspect
import re
import typing
from typing import Annotated, Any

import pytest

from chroma.store import CollectionNameRule
from firebase_data.types import RtdbKeyRule
from rpc.registry import MethodSpec, Namespace, all_methods
from rpc.types import ActingUser, DocId, Identifier, OwnDocId, Owned, UserScopedPath, Within

# Names that say "this addresses tenant data", whatever the argument's type.
TENANT_NAME = re.compile(
    r"(^|_)(path|space|session|collection|thread|id|ids|uuid|key|slug|username|recipient|user|companies|invited_by)(_|$)"
)
# Rules that make a string an identifier or a path: whatever its name, such an argument addresses something.
ID_RULES = (Identifier, RtdbKeyRule, CollectionNameRule, UserScopedPath, ActingUser)
# Rule 6 (sessions, REGISTRY.*) is another engineer's: registry/ moves from SQL to Redis and gets its session type
# there. Only these existing arguments are waived; a new REGISTRY argument without a scope still fails.
PENDING_RULE_6 = {
    ("REGISTRY.register_user", "session_id"), ("REGISTRY.register_user", "authorized_companies"),
    ("REGISTRY.heartbeat", "session_id"), ("REGISTRY.unregister_session", "session_id"),
}


def _rules(hint: Any) -> list[Any]:
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *rules = typing.get_args(hint)
        return [*rules, *_rules(base)]
    return [rule for arg in typing.get_args(hint) for rule in _rules(arg)]


def names_tenant_data(name: str, hint: Any) -> bool:
    return bool(TENANT_NAME.search(name)) or any(isinstance(rule, ID_RULES) for rule in _rules(hint))


def unscoped(spec: MethodSpec) -> list[str]:
    return [name for name in spec.signature.parameters
            if name not in spec.scopes and names_tenant_data(name, spec.hints.get(name))]


def served_methods() -> list[MethodSpec]:
    """Every method of the gateway (test-only namespaces registered by other test modules aside)."""
    return [spec for spec in all_methods() if not spec.func.__module__.startswith("tests.")]


def test_every_argument_naming_tenant_data_has_a_scope():
    missing = [f"{spec.full_name}({name})" for spec in served_methods() for name in unscoped(spec)
               if (spec.full_name, name) not in PENDING_RULE_6]
    assert missing == [], f"give these arguments a scope type (rpc/types.py): {missing}"


def test_the_waivers_are_only_for_rule_6():
    assert {name.partition(".")[0] for name, _ in PENDING_RULE_6} == {"REGISTRY"}


def test_the_guard_catches_an_unscoped_id():
    def read_job(user_id: str, job_id: DocId, space_code: str, limit: int = 5) -> dict:
        return {}

    signature = inspect.signature(read_job)
    hints = typing.get_type_hints(read_job, include_extras=True)
    spec = MethodSpec(namespace="X", name="read_job", func=read_job, writes=False, timeout_ceiling_ms=1000,
                      user_params=("user_id",), path_params=(), signature=signature, hints=hints,
                      scopes={"user_id": ActingUser()})
    assert unscoped(spec) == ["job_id", "space_code"]


def test_markers_that_point_at_nothing_are_refused_at_registration():
    ns = Namespace("SECURITYTEST")
    with pytest.raises(ValueError, match="no parameter names the user"):
        @ns.method(writes=False)
        def orphan(job_id: OwnDocId) -> None: ...
    with pytest.raises(ValueError, match="not an Owned parameter"):
        @ns.method(writes=False)
        def thread_without_space(thread: Annotated[str, Within("space_code")], space_code: str) -> None: ...
    assert not [spec for spec in all_methods() if spec.namespace == "SECURITYTEST"]


def test_the_catalogue_names_each_scope():
    specs = {spec.full_name: spec.describe()["scopes"] for spec in served_methods()}
    assert specs["FIREBASE_REALTIME.get_channel_messages"] == {"space_code": "owned:space", "thread_key": "within:space_code"}
    assert specs["CHROMA_VECTOR.query_documents"] == {"collection_name": "owned:chroma_collection"}
    assert specs["FIREBASE_MANAGEMENT.restart_job"] == {"user_id": "user", "job_id": "in_user_tree"}
    assert specs["FIREBASE_REALTIME.send_direct_message"]["recipient_id"] == "owned:reachable_user"
    assert all(isinstance(scope, Owned) for spec in served_methods() for name, scope in spec.owned_params)
