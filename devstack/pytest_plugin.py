"""pytest plugin (``-p devstack.pytest_plugin`` in pytest.ini): the real services for a test session.

It must run before pytest-django configures Django, so the environment variables it exports are what settings.py
reads; a conftest.py is loaded too late for that (pytest loads initial conftests trylast).
"""
from __future__ import annotations

import os

import pytest

from .stack_for_tests import ServiceStack, start_service_stack

STACK: ServiceStack | None = None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--postgres", action="store_true",
        help="run against a throw-away PostgreSQL server (Debian's postgresql) instead of SQLite",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    global STACK
    if STACK is None:
        # Read from args: options are parsed after this hook, and DATABASE_URL must be set before Django starts.
        STACK = start_service_stack(postgres="--postgres" in args)


def pytest_unconfigure(config: pytest.Config) -> None:
    if STACK is not None:
        STACK.stop()


def pytest_report_header(config: pytest.Config) -> str:
    assert STACK is not None
    database = "postgresql" if STACK.postgres else "sqlite"
    return (
        f"stack: valkey :{STACK.redis_port}, firestore emulator :{STACK.firestore_port}, "
        f"rtdb stand-in :{STACK.rtdb_port}, database {database}, run dir {STACK.run_dir} (pid {os.getpid()})"
    )


def get_stack() -> ServiceStack:
    assert STACK is not None, "devstack.pytest_plugin did not start the services"
    return STACK
