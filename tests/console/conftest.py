from __future__ import annotations

import pytest

from core import activity
from tests.admin.conftest import staff_client  # noqa: F401 - the console pages are admin pages


@pytest.fixture
def fresh_activity(stack) -> None:
    """Counts recorded by earlier tests are flushed, then wiped, so a test sees only its own."""
    activity.flush()
    stack.wipe()
