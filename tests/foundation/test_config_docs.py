"""Every variable the settings read is documented in README.md's table and in .env.example."""
from __future__ import annotations

import re

from tests.conftest import BASE_DIR

SETTINGS_SOURCE = (BASE_DIR / "listeners_project" / "settings.py").read_text()
# env.str("NAME", ...), env.int(\n    "NAME", ...), _required_in_prod("NAME", ...)
READ_VARIABLES = set(re.findall(r'(?:env\.\w+|_required_in_prod)\(\s*"([A-Z][A-Z0-9_]+)"', SETTINGS_SOURCE))


def test_the_settings_read_the_variables_we_expect_to_find() -> None:
    assert {"GATEWAY_MODE", "LISTENERS_SERVICE_TOKEN", "FIRESTORE_EMULATOR_HOST", "DEVSTACK_STATE_DIR"} <= READ_VARIABLES
    assert len(READ_VARIABLES) > 40


def test_every_variable_has_a_row_in_the_readme_configuration_table() -> None:
    readme = (BASE_DIR / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", table, flags=re.MULTILINE))
    assert READ_VARIABLES - rows == set()
    assert rows - READ_VARIABLES == set(), "documented variables that the settings no longer read"


def test_every_variable_is_in_env_example() -> None:
    example = (BASE_DIR / ".env.example").read_text()
    listed = set(re.findall(r"^# ([A-Z][A-Z0-9_]+)=", example, flags=re.MULTILINE))
    assert READ_VARIABLES - listed == set()
    assert listed - READ_VARIABLES == set()
