"""Every error code of contract §1, through POST /rpc (Django test client → the same gateway as production)."""
from __future__ import annotations

import json
import logging

import pytest
from django.test import override_settings

from core.serialization import loads

from .methods_for_tests import SECRET_TEXT, runs

pytestmark = pytest.mark.django_db


def assert_error(result, code: str, status: int) -> None:
    assert result.status == status, result.body
    assert result.body["ok"] is False
    assert result.code == code
    assert result.body["trace_id"]
    assert set(result.body) == {"ok", "error", "trace_id"}


# --- UNAUTHENTICATED (401) -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("token", [None, "", "wrong-token", "gwk_000000000000_notarealtoken"])
def test_missing_or_invalid_bearer_is_unauthenticated(rpc, token):
    assert_error(rpc("REGISTRY.ping", token=token), "UNAUTHENTICATED", 401)


def test_non_bearer_scheme_is_unauthenticated(service_token):
    from django.test import Client

    response = Client().post("/rpc", data=b'{"method":"REGISTRY.ping"}', content_type="application/json",
                             HTTP_AUTHORIZATION=f"Basic {service_token}")
    assert response.status_code == 401


def test_auth_fails_closed_when_no_token_is_configured(rpc, service_token):
    with override_settings(LISTENERS_SERVICE_TOKEN=""):
        assert_error(rpc("REGISTRY.ping", token=service_token), "UNAUTHENTICATED", 401)
        assert_error(rpc("REGISTRY.ping", token=""), "UNAUTHENTICATED", 401)


def test_authentication_is_checked_before_the_body(rpc):
    assert_error(rpc("x", token="wrong", raw_body=b"not json"), "UNAUTHENTICATED", 401)
    assert_error(rpc("x", token="wrong", raw_body=b"x" * (2 * 1024 * 1024)), "UNAUTHENTICATED", 401)


# --- INVALID_REQUEST (400 / 413) and INVALID_API_VERSION (400) ------------------------------------------------------
@pytest.mark.parametrize("raw_body", [b"", b"not json", b"{", b'{"method": NaN}', b"[1, 2]", b'"REGISTRY.ping"',
                                      b"null", b"\xff\xfe{}", b'{"method": "\\ud800"}'])
def test_body_that_is_not_a_json_object_is_invalid_request(rpc, raw_body):
    assert_error(rpc("x", raw_body=raw_body), "INVALID_REQUEST", 400)


@pytest.mark.parametrize("field,value", [
    ("method", 5), ("method", None), ("method", ""), ("method", ["REGISTRY.ping"]),
    ("args", {"a": 1}), ("args", "abc"), ("args", None),
    ("kwargs", [1]), ("kwargs", "x"),
    ("user_id", 5), ("user_id", True), ("user_id", ""), ("user_id", "u" * 129), ("user_id", "a\nb"),
    ("session_id", 1.5), ("trace_id", {"a": 1}), ("idempotency_key", 12), ("idempotency_key", "k" * 256),
    ("timeout_ms", "100"), ("timeout_ms", True), ("timeout_ms", 1.5), ("timeout_ms", 0), ("timeout_ms", 120001),
    ("reply_to", 7), ("reply_to", "user:someone"), ("reply_to", "redis:reply:"), ("api_version", 1),
])
def test_envelope_field_of_wrong_type_is_invalid_request_never_coerced(rpc, field, value):
    body = {"method": "REGISTRY.ping", field: value}
    result = rpc("x", raw_body=json.dumps(body).encode())
    assert_error(result, "INVALID_REQUEST", 400)
    assert field in result.body["error"]["message"]


def test_missing_method_is_invalid_request(rpc):
    assert_error(rpc("x", raw_body=b"{}"), "INVALID_REQUEST", 400)


def test_unknown_envelope_fields_are_ignored(rpc):
    result = rpc("x", raw_body=b'{"method": "REGISTRY.ping", "extra": {"anything": 1}}')
    assert result.data == {"pong": True}


def test_body_over_the_limit_is_413(rpc):
    with override_settings(RPC_MAX_BODY_BYTES=1000):
        big = json.dumps({"method": "RPCTEST.echo", "args": ["x" * 1000]}).encode()
        assert_error(rpc("x", raw_body=big), "INVALID_REQUEST", 413)
        small = json.dumps({"method": "RPCTEST.echo", "args": ["x" * 100]}).encode()
        assert rpc("x", raw_body=small).data == {"value": "x" * 100}


def test_default_body_limit_is_one_mebibyte(rpc):
    just_over = json.dumps({"method": "RPCTEST.echo", "args": ["x" * (1024 * 1024)]}).encode()
    assert_error(rpc("x", raw_body=just_over), "INVALID_REQUEST", 413)


@pytest.mark.parametrize("version", ["v2", "V1", "1"])
def test_other_api_version_is_refused(rpc, version):
    result = rpc("REGISTRY.ping", api_version=version)
    assert_error(result, "INVALID_API_VERSION", 400)
    assert result.body["error"]["message"] == "expected v1"


def test_default_api_version_is_v1(rpc):
    assert rpc("REGISTRY.ping", api_version="v1").data == {"pong": True}


# --- METHOD_NOT_FOUND (200) ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", [
    "REGISTRY.nope", "NOPE.ping", "ping", "REGISTRY.", ".ping", "REGISTRY.ping.x",
    "REGISTRY.__getattribute__", "REGISTRY.__class__", "REGISTRY.__init__", "FIREBASE_MANAGEMENT.__getattribute__",
    "FIREBASE_MANAGEMENT.__setattr__", "REGISTRY._private", "RPCTEST._count", "RPCTEST.runs", "registry.ping",
    "REGISTRY.PING", "rpc.registry._METHODS", "CHROMA_VECTOR.__dict__",
])
def test_unregistered_private_and_dunder_names_are_method_not_found(rpc, method):
    result = rpc(method, "stripe_api_key")
    assert_error(result, "METHOD_NOT_FOUND", 200)


# --- INVALID_ARGS (200) ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,kwargs", [
    ([], {}),                                                   # missing required
    (["5", 1.0, "n"], {}),                                      # "5" is not an int
    ([True, 1.0, "n"], {}),                                     # a bool is not an int
    ([1, "1.0", "n"], {}),                                      # "1.0" is not a number
    ([1, 1.0, 5], {}),                                          # 5 is not a str
    ([1, 1.0, "n" * 11], {}),                                   # MaxLen(10)
    ([1, 1.0, "n"], {"flag": "true"}),                          # no coercion of booleans
    ([1, 1.0, "n"], {"tags": ["a", 2]}),                        # list[str] item
    ([1, 1.0, "n"], {"mode": "c"}),                             # Literal
    ([1, 1.0, "n"], {"limit": 11}),                             # Bounded(1, 10)
    ([1, 1.0, "n"], {"limit": 0}),
    ([1, 1.0, "n"], {"pair": [1]}),                             # tuple[int, str] length
    ([1, 1.0, "n"], {"pair": ["1", "a"]}),                      # tuple[int, str] item types
    ([1, 1.0, "n"], {"unknown": 1}),                            # no such parameter
    ([1, 1.0, "n", False, None, "a", 5, None, "extra"], {}),    # too many positionals
    ([1, 1.0], {"count": 2, "name": "n"}),                      # count given twice
])
def test_arguments_that_do_not_bind_or_validate_are_invalid_args(rpc, args, kwargs):
    result = rpc("RPCTEST.typed", *args, kwargs=kwargs)
    assert_error(result, "INVALID_ARGS", 200)
    assert "Traceback" not in result.body["error"]["message"]


def test_valid_arguments_bind_positionally_and_by_keyword(rpc):
    result = rpc("RPCTEST.typed", 3, 2, kwargs={"name": "n", "tags": ["a"], "mode": "b", "pair": [1, "x"]})
    assert result.data == {"count": 3, "ratio": 2, "name": "n", "flag": False, "tags": ["a"], "mode": "b",
                           "limit": 5, "pair": [1, "x"]}


def test_variadic_parameters_are_checked_item_by_item(rpc):
    assert rpc("RPCTEST.variadic", 1, 2, 3, kwargs={"x": "y"}).data == {"first": 1, "rest": [2, 3],
                                                                       "options": {"x": "y"}}
    assert_error(rpc("RPCTEST.variadic", 1, "2"), "INVALID_ARGS", 200)
    assert_error(rpc("RPCTEST.variadic", 1, kwargs={"x": 5}), "INVALID_ARGS", 200)


def test_defaults_are_not_validated_only_what_the_caller_sent(rpc):
    assert rpc("RPCTEST.optional_default").data is None
    assert rpc("RPCTEST.optional_default", "x").data == "x"


def test_invalid_args_message_names_parameters_not_python_internals(rpc):
    message = rpc("RPCTEST.typed", kwargs={"bogus": 1}).body["error"]["message"]
    assert "'bogus'" in message and "count" in message
    assert "TypeError" not in message and "got an unexpected" not in message


@pytest.mark.parametrize("value", ["a/b", "..", "x..y", "a\x00b", "", "n" * 21])
def test_identifier_arguments_refuse_path_tricks(rpc, value):
    assert_error(rpc("RPCTEST.segment", value), "INVALID_ARGS", 200)


# --- errors raised inside business code ----------------------------------------------------------------------------
def test_key_error_inside_a_method_is_internal_not_method_not_found(rpc):
    result = rpc("RPCTEST.raise_key_error")
    assert_error(result, "INTERNAL", 200)
    assert SECRET_TEXT not in result.raw.decode()


def test_type_error_inside_a_method_is_internal_not_invalid_args(rpc):
    result = rpc("RPCTEST.raise_type_error")
    assert_error(result, "INTERNAL", 200)
    assert SECRET_TEXT not in result.raw.decode()


def test_internal_error_message_is_generic_with_the_trace_id(rpc):
    result = rpc("RPCTEST.raise_runtime_error", trace_id="trace-for-support-42")
    assert_error(result, "INTERNAL", 200)
    assert result.body["error"]["message"] == "internal error (trace_id trace-for-support-42)"
    assert "hunter2" not in result.raw.decode() and SECRET_TEXT not in result.raw.decode()
    assert "retry_after_ms" not in result.body["error"]


def _events(caplog) -> list[dict]:
    return [record.msg for record in caplog.records if isinstance(record.msg, dict)]


def test_internal_error_is_logged_with_trace_id_and_the_exception(rpc, caplog):
    with caplog.at_level(logging.INFO, logger="rpc"):
        rpc("RPCTEST.raise_runtime_error", trace_id="trace-logged-1")
    events = _events(caplog)
    failure = next(event for event in events if event["event"] == "rpc_method_failed")
    assert failure["trace_id"] == "trace-logged-1"
    assert "hunter2" in str(failure["exc_info"])  # the text goes to the log, and only there
    assert any(event["event"] == "rpc_error" and event["trace_id"] == "trace-logged-1" for event in events)


def test_rejections_are_logged_with_trace_id(rpc, caplog):
    with caplog.at_level(logging.INFO, logger="rpc"):
        rpc("NOPE.nothing", trace_id="trace-rejected-1")
    assert any(event.get("code") == "METHOD_NOT_FOUND" and event.get("trace_id") == "trace-rejected-1"
               for event in _events(caplog))


def test_unserialisable_result_is_internal(rpc):
    assert_error(rpc("RPCTEST.unserialisable"), "INTERNAL", 200)


def test_not_found_raised_by_a_method(rpc, marker):
    result = rpc("RPCTEST.not_found", marker, idempotency_key=f"k-{marker}")
    assert_error(result, "NOT_FOUND", 200)
    assert result.body["error"]["message"] == "no such document"


# --- UNAVAILABLE (200) -----------------------------------------------------------------------------------------------
def test_method_raising_unavailable_sets_retry_after(rpc, marker):
    result = rpc("RPCTEST.unavailable_first", marker, idempotency_key=f"k-{marker}")
    assert_error(result, "UNAVAILABLE", 200)
    assert result.body["error"]["retry_after_ms"] == 1000


def test_client_library_connection_error_is_unavailable_without_its_text(rpc, marker):
    result = rpc("RPCTEST.connection_error_first", marker, idempotency_key=f"k-{marker}")
    assert_error(result, "UNAVAILABLE", 200)
    assert SECRET_TEXT not in result.raw.decode() and "10.0.0.7" not in result.raw.decode()


def test_idempotency_store_down_is_unavailable_and_the_call_does_not_run(rpc, stack, marker):
    stack.processes["valkey"].kill()
    try:
        result = rpc("RPCTEST.count_call", marker, idempotency_key=f"k-{marker}")
        assert_error(result, "UNAVAILABLE", 200)  # fail closed: the original ran the call without idempotency
        assert result.body["error"]["retry_after_ms"] > 0
    finally:
        stack.restart("valkey")
    assert runs(marker) == 0


# --- TIMEOUT (200) ---------------------------------------------------------------------------------------------------
def test_deadline_is_enforced(rpc, marker):
    result = rpc("RPCTEST.count_call", marker, 1.5, idempotency_key=f"k-{marker}", timeout_ms=200)
    assert_error(result, "TIMEOUT", 200)
    assert result.body["error"]["retry_after_ms"] == 1000


def test_method_timeout_ceiling_caps_the_callers_timeout(rpc):
    result = rpc("RPCTEST.capped_sleep", 1.0, timeout_ms=60_000)
    assert_error(result, "TIMEOUT", 200)


# --- PERMISSION_DENIED (403) -----------------------------------------------------------------------------------------
def test_user_id_argument_must_match_the_envelope_user(rpc):
    assert rpc("RPCTEST.whose", "alice", user_id="alice").data == "alice"
    assert_error(rpc("RPCTEST.whose", "bob", user_id="alice"), "PERMISSION_DENIED", 403)
    assert_error(rpc("RPCTEST.whose", kwargs={"user_id": "bob"}, user_id="alice"), "PERMISSION_DENIED", 403)
    assert_error(rpc("RPCTEST.whose", "bob"), "PERMISSION_DENIED", 403)  # no envelope user at all


@pytest.mark.parametrize("path,allowed", [
    ("clients/alice/notifications", True),
    ("/clients/alice/notifications/", True),
    ("clients/bob/notifications", False),
    ("clients/alicex/notifications", False),
    ("notifications", False),
    ("users/alice", False),
])
def test_user_path_must_be_under_the_envelope_users_clients_node(rpc, path, allowed):
    result = rpc("RPCTEST.read_path", path, user_id="alice")
    if allowed:
        assert result.data == path
    else:
        assert_error(result, "PERMISSION_DENIED", 403)


@pytest.mark.parametrize("path", ["clients/alice/../bob/x", "clients//alice", "clients/alice/./x"])
def test_path_tricks_are_refused_before_scoping(rpc, path):
    assert_error(rpc("RPCTEST.read_path", path, user_id="alice"), "INVALID_ARGS", 200)
    assert_error(rpc("RPCTEST.read_declared_path", path, user_id="alice"), "INVALID_ARGS", 200)


def test_declared_path_params_are_scoped_too(rpc):
    assert rpc("RPCTEST.read_declared_path", "clients/alice/x", user_id="alice").data == "clients/alice/x"
    assert_error(rpc("RPCTEST.read_declared_path", "clients/bob/x", user_id="alice"), "PERMISSION_DENIED", 403)


def test_write_without_idempotency_key_is_refused(rpc, marker):
    result = rpc("RPCTEST.count_call", marker)
    assert_error(result, "INVALID_REQUEST", 400)
    assert "idempotency_key" in result.body["error"]["message"]
    assert runs(marker) == 0


# --- the success envelope -------------------------------------------------------------------------------------------
def test_success_envelope_echoes_the_callers_trace_id(rpc):
    result = rpc("REGISTRY.ping", trace_id="abc-123")
    assert result.status == 200
    assert loads(result.raw) == {"ok": True, "data": {"pong": True}, "trace_id": "abc-123"}


def test_trace_id_is_generated_when_absent_and_x_trace_id_is_honoured(service_token):
    from django.test import Client

    client = Client()
    generated = client.post("/rpc", data=b'{"method":"REGISTRY.ping"}', content_type="application/json",
                            HTTP_AUTHORIZATION=f"Bearer {service_token}").json()
    assert len(generated["trace_id"]) == 32
    header = client.post("/rpc", data=b'{"method":"REGISTRY.ping"}', content_type="application/json",
                         HTTP_AUTHORIZATION=f"Bearer {service_token}", HTTP_X_TRACE_ID="from-header").json()
    assert header["trace_id"] == "from-header"


def test_get_on_rpc_is_not_allowed_and_not_a_5xx(client):
    assert client.get("/rpc").status_code == 405


def test_each_call_logs_the_original_services_names_once(rpc, caplog):
    """rpc_call, then rpc_ok or rpc_error, each with method, uid, trace_id (and duration on the outcome)."""
    with caplog.at_level(logging.DEBUG, logger="rpc"):
        rpc("RPCTEST.echo", 1, user_id="u-log", trace_id="trace-ok-1")
        rpc("RPCTEST.raise_runtime_error", user_id="u-log", trace_id="trace-err-1")
    events = [event for event in _events(caplog) if event["event"] in {"rpc_call", "rpc_ok", "rpc_error"}]
    assert [(e["event"], e["trace_id"]) for e in events] == [
        ("rpc_call", "trace-ok-1"), ("rpc_ok", "trace-ok-1"), ("rpc_call", "trace-err-1"), ("rpc_error", "trace-err-1"),
    ]
    assert {e["uid"] for e in events} == {"u-log"}
    assert {e["method"] for e in events} == {"RPCTEST.echo", "RPCTEST.raise_runtime_error"}
    assert all(e["duration_ms"] >= 0 for e in events if e["event"] != "rpc_call")
