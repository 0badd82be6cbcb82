"""Positional calls are bound by a zip (rpc.registry.MethodSpec.bind's fast path): the same checks, defaults and
messages as inspect.Signature.bind, which still binds every call with keyword arguments."""
from __future__ import annotations

import pytest

from rpc.registry import resolve

from .methods_for_tests import ns  # noqa: F401 - RPCTEST.* registered

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("args", [
    [1, 1.0, "n", "true"],                                  # flag: no coercion of booleans
    [1, 1.0, "n", False, ["a", 2]],                         # list[str] item
    [1, 1.0, "n", False, None, "c"],                        # Literal
    [1, 1.0, "n", False, None, "a", 11],                    # Bounded(1, 10)
    [1, 1.0, "n", False, None, "a", 5, [1]],                # tuple[int, str] length
    [True, 1.0, "n"],                                       # a bool is not an int
])
def test_positional_arguments_are_type_checked(rpc, args):
    result = rpc("RPCTEST.typed", *args)
    assert result.status == 200 and result.code == "INVALID_ARGS", result.body


def test_positional_call_gets_the_defaults_of_what_it_leaves_out(rpc):
    assert rpc("RPCTEST.typed", 3, 2, "n", True).data == {
        "count": 3, "ratio": 2, "name": "n", "flag": True, "tags": None, "mode": "a", "limit": 5, "pair": None}


@pytest.mark.parametrize("args", [[1, 1.0], [1, 1.0, "n", False, None, "a", 5, None, "extra"]])
def test_missing_or_extra_positionals_name_the_call_shape(rpc, args):
    message = rpc("RPCTEST.typed", *args).body["error"]["message"]
    assert message == f"arguments do not match RPCTEST.typed{resolve('RPCTEST.typed').params_text()}"


def test_both_paths_bind_a_call_alike():
    spec = resolve("RPCTEST.typed")
    positional = spec.bind([3, 2.0, "n"], {})
    by_keyword = spec.bind([3, 2.0], {"name": "n"})  # kwargs: inspect.Signature.bind
    assert positional == by_keyword
    assert positional.args == (3, 2.0, "n", False, None, "a", 5, None) and positional.kwargs == {}
