"""W3C Trace Context on the production /rpc (uvicorn, rpc.asgi.RpcEndpoint): a valid ``traceparent``'s trace id
becomes the call's trace_id, in the response, the log lines and the events it publishes; an invalid one is ignored
(the call gets a new trace id), never an error."""
from __future__ import annotations

import json
import re
import uuid
from typing import Iterator

import httpx
import pytest

from core.integrations.redis import subscriber_count
from devstack.processes import ManagedProcess
from tests.conftest import start_gateway, wait_until
from tests.realtime.wsclient import job_write, open_ws, recv_type

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(scope="module")
def gateway(stack) -> Iterator[tuple[ManagedProcess, str]]:
    process, address = start_gateway(stack, extra_env={"LOG_LEVEL": "INFO"}, name=f"asgi-traceparent-{uuid.uuid4().hex[:6]}")
    yield process, address
    process.stop()


def post(address: str, token: str, body: dict, **headers: str) -> httpx.Response:
    return httpx.post(f"http://{address}/rpc", content=json.dumps(body).encode(), timeout=30,
                      headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", **headers})


def log_lines(process: ManagedProcess) -> list[dict]:
    lines = []
    for line in process.logfile.read_text(errors="replace").splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def test_a_valid_traceparent_is_the_calls_trace_id_in_response_logs_and_events(gateway, service_token):
    process, address = gateway
    uid = "traceparent_user"
    with open_ws(address, service_token, uid=uid) as ws:
        wait_until(lambda: subscriber_count(f"user:{uid}") >= 1)
        response = post(address, service_token, job_write(uid, "job_tp"), traceparent=f"00-{TRACE.upper()}-00f067aa0ba902b7-01")
        assert response.status_code == 200 and response.json()["trace_id"] == TRACE, response.text
        event = recv_type(ws, "notif.job_updated")
    assert event["trace_id"] == TRACE and response.json()["events"] == [{"channel": f"user:{uid}", "seq": event["seq"]}]
    wait_until(lambda: any(line.get("event") == "rpc_ok" and line.get("trace_id") == TRACE
                           for line in log_lines(process)), message="no rpc_ok log line with the trace id")


@pytest.mark.parametrize("traceparent", [
    "garbage", "00-" + "0" * 32 + "-00f067aa0ba902b7-01", f"00-{TRACE[:-1]}z-00f067aa0ba902b7-01",
    f"ff-{TRACE}-00f067aa0ba902b7-01", f"00-{TRACE}-short-01", "",
])
def test_an_invalid_traceparent_is_ignored_and_the_call_gets_a_new_trace_id(gateway, service_token, traceparent):
    _, address = gateway
    response = post(address, service_token, {"method": "REGISTRY.ping"}, traceparent=traceparent)
    assert response.status_code == 200 and response.json()["ok"] is True
    trace_id = response.json()["trace_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id) and trace_id not in traceparent.lower()
