from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client


@pytest.fixture
def staff_client(db) -> Client:
    """A logged-in superuser (staff with every permission)."""
    user = get_user_model().objects.create_superuser("staff", "staff@example.test", "pw-not-used-for-login")
    client = Client()
    client.force_login(user)
    return client
