"""The worker's session sweep (workflows/session_sweep.py) on its database thread."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test import override_settings

from registry import services
from registry.models import SessionRecord
from workflows.session_sweep import SessionSweep

pytestmark = pytest.mark.django_db


@override_settings(DEBUG=True)
def test_the_sweep_clears_the_query_log_that_debug_keeps_on_its_thread(stack):
    """No request_started signal in a worker: without the sweep's reset, DEBUG kept its last 9,000 queries (the
    history INSERTs among them) for the life of the process."""
    services.register_session(user_id="sweep-u", session_id="s1")
    services.unregister_session(user_id="sweep-u", session_id="s1")  # queued for the SQL history
    SessionRecord.objects.count()  # a query DEBUG logs
    assert connection.queries_log
    SessionSweep().run_if_due()
    assert SessionRecord.objects.filter(session_id="s1").exists()
    assert len(connection.queries_log) == 1  # only the exists() above: what the sweep ran is gone
