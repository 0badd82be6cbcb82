from __future__ import annotations

from tests.admin.conftest import staff_client  # noqa: F401 - the console pages are admin pages
