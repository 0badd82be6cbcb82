"""pytest plugin (``-p devstack.pytest_plugin`` in pytest.ini): the real services for a test session.

It must run before pytest-django configures Django, so the environment variables it exports are what settings.py
reads; a conftest.py is loaded too late for that (pytest loads initial conftests trylast).
"""
from __future__ import annotations

import os

import pytest

from .stack_for_tests import ServiceStack, start_service_stack

STACK: ServiceStack | None = None
CLUSTER_ENV = "GATEWAY_TEST_REDIS_CLUSTER"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--redis-cluster", action="store_true", default=False,
        help=f"run against a local 3-master Valkey Cluster instead of one Valkey (or set {CLUSTER_ENV}=true)",
    )
    parser.addoption(
        "--postgres", action="store_true",
        help="run against a throw-away PostgreSQL server (Debian's postgresql) instead of SQLite",
    )


def redis_cluster_requested(early_config: pytest.Config, args: list[str]) -> bool:
    option = getattr(early_config.known_args_namespace, "redis_cluster", False) or "--redis-cluster" in args
    return bool(option) or os.environ.get(CLUSTER_ENV, "").lower() in ("1", "true", "yes")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    global STACK
    if STACK is None:
        # Read from args: options are parsed after this hook, and DATABASE_URL must be set before Django starts.
        STACK = start_service_stack(postgres="--postgres" in args,
                                    redis_cluster=redis_cluster_requested(early_config, args))


def pytest_unconfigure(config: pytest.Config) -> None:
    if STACK is not None:
        STACK.stop()


def pytest_report_header(config: pytest.Config) -> str:
    assert STACK is not None
    database = "postgresql" if STACK.postgres else "sqlite"
    valkey = f"valkey cluster :{STACK.redis_cluster.ports}" if STACK.redis_cluster else f"valkey :{STACK.redis_port}"
    return (
        f"stack: {valkey}, firestore emulator :{STACK.firestore_port}, "
        f"rtdb stand-in :{STACK.rtdb_port}, database {database}, run dir {STACK.run_dir} (pid {os.getpid()})"
    )


def get_stack() -> ServiceStack:
    assert STACK is not None, "devstack.pytest_plugin did not start the services"
    return STACK
