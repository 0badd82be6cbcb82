"""Done-when of issue 16, generated from the registry: for every registered method, user A calls it with B's ids in
each scoped argument (the rest A's own), and B's data, read back directly, is unchanged; arguments the registry can
judge alone (a user, a path, a space, a collection) are refused before the call.

REGISTRY.* is left out here: sessions are rule 6, covered by the registry's own tests (registry/ is moving to Redis).
Its arguments are still under the scope-declaration guard (test_scope_declarations.py).
"""
from __future__ import annotations

import inspect
import typing
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

import pytest

from rpc.registry import MethodSpec, all_methods
from rpc.types import (
    ActingUser, Bounded, InUserTree, Owned, Public, Scope, UserScopedPath, Within,
)

from .conftest import A, B, Tenant, snapshot

REFUSED = {"PERMISSION_DENIED", "NOT_FOUND"}


@dataclass(frozen=True)
class Case:
    method: str
    param: str | None  # the argument carrying B's id; None for a method without scoped arguments

    @property
    def id(self) -> str:
        return f"{self.method}[{self.param or '-'}]"


def _methods() -> list[MethodSpec]:
    return [spec for spec in all_methods() if spec.namespace != "REGISTRY" and not spec.func.__module__.startswith("tests.")]


def _cases() -> Iterator[Case]:
    for spec in _methods():
        scoped = [name for name, scope in spec.scopes.items() if not isinstance(scope, Public)]
        if not scoped:
            yield Case(spec.full_name, None)
        for name in scoped:
            yield Case(spec.full_name, name)


CASES = list(_cases())


def _path_for(name: str, tenant: Tenant) -> str:
    """A path of ``tenant``'s of the kind the argument's name asks for."""
    uid, mandate = tenant.uid, tenant.mandate_path
    if name in ("collection_path", "notifications_path"):
        return f"clients/{uid}/notifications"
    if name in ("firebase_path", "document_path"):
        return f"clients/{uid}/klk_vision/dept_apbookeeper/journal/entry_demo_job_001"
    if name == "context_path":
        return f"{mandate}/context/general_context"
    return mandate


def _owned_value(scope: Owned, tenant: Tenant) -> str:
    return {"space": tenant.space, "chroma_collection": tenant.collection, "reachable_user": tenant.uid}[scope.what]


def _in_tree_value(name: str, tenant: Tenant) -> Any:
    """An id found in ``tenant``'s tree: the demo ids are the same for every user, the space codes are not."""
    if any(word in name for word in ("space", "mandat_id", "collection_id")):
        return tenant.space
    if name in ("job_ids", "transaction_ids", "companies"):
        return [{"contact_space_id": tenant.space}] if name == "companies" else ["demo_job_001"]
    if name == "user_data":
        return {"uid": tenant.uid, "email": f"{tenant.uid}@example.com"}
    if name in ("client_uuid", "uuid"):
        return tenant.demo.client_uuid
    if name == "job_id" and "scheduler" in name:
        return tenant.mandate_path.replace("/", "_") + "_daily"
    return "demo_job_001"


def scoped_value(spec: MethodSpec, name: str, scope: Scope, tenant: Tenant) -> Any:
    if isinstance(scope, ActingUser):
        return tenant.uid
    if isinstance(scope, UserScopedPath):
        return _path_for(name, tenant)
    if isinstance(scope, Owned):
        return _owned_value(scope, tenant)
    if isinstance(scope, Within):
        return f"doc_{tenant.uid.removeprefix('sec_')}" if spec.namespace == "CHROMA_VECTOR" else "demo_alpine_1"
    if spec.full_name.endswith("delete_scheduler_job_completely"):
        return tenant.mandate_path.replace("/", "_") + "_daily"
    assert isinstance(scope, InUserTree), scope
    return _in_tree_value(name, tenant)


def example(hint: Any) -> Any:
    """A value that passes ``hint``'s type check (the registry binds and checks before scoping)."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *rules = typing.get_args(hint)
        bounded = next((rule for rule in rules if isinstance(rule, Bounded)), None)
        if bounded is not None:
            return type(example(base))(bounded.low) if base in (int, float) else example(base)
        return example(base)
    if origin is Literal:
        return typing.get_args(hint)[0]
    if origin in (Union, __import__("types").UnionType):
        return example(next(option for option in typing.get_args(hint) if option is not type(None)))
    if hint is str or hint is Any or hint is object:
        return "sec_x1"
    if hint is bool:
        return False
    if hint is int:
        return 1
    if hint is float:
        return 1.0
    if origin is dict or hint is dict:
        return {}
    if origin is list or hint is list:
        return []
    raise AssertionError(f"no example for {hint!r}")


def arguments(spec: MethodSpec, acting: Tenant, victim: Tenant, param: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for name, parameter in spec.signature.parameters.items():
        scope = spec.scopes.get(name)
        if scope is not None and not isinstance(scope, Public):
            value = scoped_value(spec, name, scope, victim if name == param else acting)
            list_typed = isinstance(example(spec.hints.get(name, Any)), list)
            kwargs[name] = [value] if list_typed and not isinstance(value, list) else value
        elif parameter.default is inspect.Parameter.empty:
            kwargs[name] = example(spec.hints.get(name, Any))
    return kwargs


@pytest.fixture(scope="module")
def before(tenants) -> dict[str, Any]:
    return snapshot(tenants[1])


def test_every_served_method_is_attacked():
    attacked = {case.method for case in CASES}
    assert attacked == {spec.full_name for spec in _methods()}
    assert len(CASES) > len(attacked)  # most methods have several scoped arguments, each attacked on its own


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_cannot_reach_b(rpc, tenants, case: Case):
    acting, victim = tenants
    spec = next(spec for spec in _methods() if spec.full_name == case.method)
    before = snapshot(victim)
    kwargs = arguments(spec, acting, victim, case.param)
    result = rpc(case.method, user_id=A, idempotency_key=uuid.uuid4().hex, kwargs=kwargs)

    assert snapshot(victim) == before, f"{case.id} changed B's data"
    assert B.encode() not in result.raw, f"{case.id} answered with B's data"
    scope = spec.scopes.get(case.param) if case.param else None
    if isinstance(scope, (ActingUser, UserScopedPath, Owned)):
        # The registry judges these alone, before the call: refused whatever the other arguments are.
        assert result.code in REFUSED, f"{case.id} was not refused: {result.body}"
    else:
        # An id looked up in A's own tree, or a key inside A's own space or collection: B's data stays out of reach
        # (asserted above); the call may succeed on A's own data.
        assert result.code not in ("INTERNAL", "INVALID_REQUEST"), result.body
