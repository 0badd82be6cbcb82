"""The production ASGI application plus the RPCTEST.* methods, for the live-server tests (uvicorn and daphne)."""
from listeners_project.asgi import application  # noqa: F401 - served as tests.rpc.asgi_with_test_methods:application

from . import methods_for_tests  # noqa: F401, E402 - registers RPCTEST.*
