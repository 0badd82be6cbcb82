"""GET /rpc/methods, the OpenAPI schema (CI's ``spectacular --validate --fail-on-warn``), and the RPC metrics."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from prometheus_client import REGISTRY as PROMETHEUS

from rpc.registry import Namespace, all_methods, namespaces, resolve

BASE_DIR = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


def test_methods_catalogue_requires_auth_and_lists_every_method_with_parameters(service_token):
    client = Client()
    assert client.get("/rpc/methods").status_code == 401
    body = client.get("/rpc/methods", HTTP_AUTHORIZATION=f"Bearer {service_token}").json()
    listed = {m["method"]: m for m in body["data"]["methods"]}
    assert set(listed) == {spec.full_name for spec in all_methods()}
    typed = listed["RPCTEST.typed"]
    assert [p["name"] for p in typed["params"]] == ["count", "ratio", "name", "flag", "tags", "mode", "limit", "pair"]
    assert typed["params"][0]["type"] == "int" and typed["params"][3]["default"] is False
    assert typed["writes"] is False and typed["doc"] == "Type checks without coercion."
    assert listed["RPCTEST.whose"]["scoped_by"] == ["user_id"]
    assert listed["RPCTEST.read_path"]["scoped_by"] == ["collection_path"]
    assert listed["RPCTEST.count_call"]["writes"] is True
    assert "REGISTRY.ping" in listed


def test_registry_refuses_private_and_dunder_names_at_registration():
    ns = Namespace("RPCTEST_REGISTRATION")
    for bad in ("_private", "__getattribute__", "Capital", "with-dash", ""):
        with pytest.raises(ValueError):
            ns.method(writes=False, name=bad)(lambda: None)
    with pytest.raises(ValueError):
        Namespace("lowercase")
    with pytest.raises(ValueError):  # one name, one function
        ns.method(writes=False, name="ping")(lambda: 1)
        ns.method(writes=False, name="ping")(lambda: 2)
    assert "RPCTEST_REGISTRATION" in namespaces()
    assert resolve("RPCTEST_REGISTRATION.ping").writes is False


@pytest.mark.parametrize(("name", "declared_in"), [
    ("FIREBASE_MANAGEMENT", "firebase_data.namespaces"),
    ("FIREBASE_REALTIME", "firebase_data.namespaces"),
    ("RPCTEST", "tests.rpc.methods_for_tests"),
])
def test_a_namespace_is_declared_once_and_a_second_declaration_says_where_the_first_is(name, declared_in):
    with pytest.raises(ValueError, match=rf"RPC namespace {name} is already declared in {re.escape(declared_in)};"):
        Namespace(name)


def test_a_new_namespace_is_one_module_and_is_callable_at_once(rpc):
    ns = Namespace("RPCTEST_NEW")

    @ns.method(writes=False, timeout_ceiling_ms=5_000)
    def hello(user_id: str, greeting: str = "hi") -> str:
        """Says hello."""
        return f"{greeting} {user_id}"

    assert rpc("RPCTEST_NEW.hello", "alice", user_id="alice").data == "hi alice"
    assert rpc("RPCTEST_NEW.hello", "bob", user_id="alice").code == "PERMISSION_DENIED"  # user_id scoped by name
    assert resolve("RPCTEST_NEW.hello").timeout_ceiling_ms == 5_000


def test_openapi_schema_validates_without_warnings_and_documents_the_catalogue(stack, tmp_path):
    """What CI runs: manage.py spectacular --validate --fail-on-warn (a separate process, real settings)."""
    target = tmp_path / "openapi.json"
    completed = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json",
         "--file", str(target)],
        cwd=BASE_DIR, env={**os.environ, **stack.env}, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    schema = json.loads(target.read_text())
    method_enum = schema["components"]["schemas"]["MethodEnum"]["enum"]
    production_methods = sorted(spec.full_name for spec in all_methods() if not spec.namespace.startswith("RPCTEST"))
    assert set(production_methods) <= set(method_enum)
    assert "REGISTRY.ping" in method_enum
    envelope = schema["components"]["schemas"]["RpcEnvelope"]
    assert "`REGISTRY.ping()`" in envelope["properties"]["method"]["description"]
    assert envelope["required"] == ["method"]
    assert set(envelope["properties"]) == {"api_version", "method", "args", "kwargs", "user_id", "session_id",
                                           "trace_id", "idempotency_key", "timeout_ms", "reply_to"}
    assert set(schema["paths"]["/rpc"]["post"]["responses"]) == {"200", "400", "401", "403", "409", "413", "422"}
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def sample(name: str, **labels: str) -> float:
    return PROMETHEUS.get_sample_value(name, labels) or 0.0


def test_metrics_count_calls_by_method_and_code_latency_and_replays(rpc, client, marker):
    before_ok = sample("gateway_rpc_calls_total", method="REGISTRY.ping", code="OK")
    before_unknown = sample("gateway_rpc_calls_total", method="unknown", code="METHOD_NOT_FOUND")
    before_latency = sample("gateway_rpc_duration_seconds_count", method="REGISTRY.ping")
    before_replays = sample("gateway_rpc_idempotent_replays_total", method="RPCTEST.count_call")
    before_args = sample("gateway_rpc_calls_total", method="RPCTEST.typed", code="INVALID_ARGS")

    rpc("REGISTRY.ping")
    rpc("NO_SUCH.method-with-any-name")  # unresolved names share one label: no cardinality explosion
    rpc("RPCTEST.typed", "x")
    rpc("RPCTEST.count_call", marker, idempotency_key=f"k-{marker}")
    rpc("RPCTEST.count_call", marker, idempotency_key=f"k-{marker}")

    assert sample("gateway_rpc_calls_total", method="REGISTRY.ping", code="OK") == before_ok + 1
    assert sample("gateway_rpc_calls_total", method="unknown", code="METHOD_NOT_FOUND") == before_unknown + 1
    assert sample("gateway_rpc_duration_seconds_count", method="REGISTRY.ping") == before_latency + 1
    assert sample("gateway_rpc_idempotent_replays_total", method="RPCTEST.count_call") == before_replays + 1
    assert sample("gateway_rpc_calls_total", method="RPCTEST.typed", code="INVALID_ARGS") == before_args + 1
    exposed = client.get("/metrics").content.decode()
    assert 'gateway_rpc_calls_total{code="OK",method="REGISTRY.ping"}' in exposed
    assert "gateway_rpc_in_flight" in exposed


def test_in_flight_gauge_follows_running_method_bodies(rpc, service_token, marker):
    import threading

    from tests.conftest import wait_until

    from .test_idempotency import call

    base = sample("gateway_rpc_in_flight")
    worker = threading.Thread(target=call, args=(service_token, "RPCTEST.count_call", marker, 0.5),
                              kwargs={"idempotency_key": f"k-{marker}"})
    worker.start()
    wait_until(lambda: sample("gateway_rpc_in_flight") == base + 1, timeout=10)
    worker.join()
    wait_until(lambda: sample("gateway_rpc_in_flight") == base, timeout=10)
