from __future__ import annotations

import pytest

from core import activity


@pytest.fixture
def fresh_activity(stack) -> None:
    """Counts recorded by earlier tests (RPC calls, events) are flushed, then wiped, so a test sees only its own."""
    activity.flush()
    stack.wipe()
