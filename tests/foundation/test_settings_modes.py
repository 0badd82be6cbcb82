"""LOCAL and PROD modes, checked through the real entry point (``manage.py``) in a clean environment."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BASE_DIR


def complete_prod_env(tmp_path: Path) -> dict[str, str]:
    credentials = tmp_path / "service-account.json"
    credentials.write_text("{}")
    return {
        "GATEWAY_MODE": "PROD",
        "DJANGO_SECRET_KEY": "a-production-secret-" + "k3y-with-enough-entropy-for-django-checks",
        "DJANGO_ALLOWED_HOSTS": "gateway.internal",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.sqlite3'}",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "LISTENERS_SERVICE_TOKEN": "a-production-token-of-at-least-32-characters",
        "GOOGLE_APPLICATION_CREDENTIALS": str(credentials),
        "FIREBASE_REALTIME_DB_URL": "https://demo-gateway.firebaseio.com",
    }


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run manage.py with only ``env`` (plus PATH/HOME): nothing leaks in from the test session's own stack."""
    clean = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **env}
    return subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, str(BASE_DIR / "manage.py"), *args], cwd=BASE_DIR, env=clean, capture_output=True, text=True,
        timeout=120, stdin=subprocess.DEVNULL,
    )


def test_complete_prod_environment_passes_the_system_check(tmp_path: Path) -> None:
    result = manage(complete_prod_env(tmp_path), "check")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        (["DJANGO_SECRET_KEY"], "DJANGO_SECRET_KEY"),
        (["DJANGO_ALLOWED_HOSTS"], "DJANGO_ALLOWED_HOSTS"),
        (["DATABASE_URL"], "DATABASE_URL"),
        (["REDIS_URL"], "REDIS_URL"),
        (["LISTENERS_SERVICE_TOKEN"], "LISTENERS_SERVICE_TOKEN"),
        (["GOOGLE_APPLICATION_CREDENTIALS"], "GOOGLE_APPLICATION_CREDENTIALS or FIREBASE_ADMIN_JSON"),
        (["FIREBASE_REALTIME_DB_URL"], "FIREBASE_REALTIME_DB_URL"),
    ],
)
def test_prod_refuses_to_start_naming_the_missing_variable(tmp_path: Path, missing: list[str], named: str) -> None:
    env = {key: value for key, value in complete_prod_env(tmp_path).items() if key not in missing}
    result = manage(env, "check")
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert named in last_line and "is required when GATEWAY_MODE=PROD" in last_line


def test_prod_accepts_the_service_account_as_json_content(tmp_path: Path) -> None:
    env = complete_prod_env(tmp_path)
    del env["GOOGLE_APPLICATION_CREDENTIALS"]
    env["FIREBASE_ADMIN_JSON"] = '{"type": "service_account"}'
    assert manage(env, "check").returncode == 0


def test_an_unknown_mode_is_refused(tmp_path: Path) -> None:
    result = manage({"GATEWAY_MODE": "STAGING"}, "check")
    assert result.returncode != 0
    assert "GATEWAY_MODE must be LOCAL or PROD" in result.stderr


PRINT_FIREBASE_SETTINGS = (
    "from django.conf import settings; "
    "print(repr(settings.FIRESTORE_EMULATOR_HOST), repr(settings.FIREBASE_DATABASE_EMULATOR_HOST), settings.DEBUG)"
)


def test_local_mode_defaults_to_the_dev_stack_ports(tmp_path: Path) -> None:
    result = manage({"DEVSTACK_STATE_DIR": str(tmp_path), "DEVSTACK_FIRESTORE_PORT": "18086"}, "shell", "-v", "0", "-c",
                    PRINT_FIREBASE_SETTINGS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["'127.0.0.1:18086'", "'127.0.0.1:9009'", "True"]


def test_local_mode_with_real_credentials_does_not_fall_back_to_the_emulator(tmp_path: Path) -> None:
    credentials = tmp_path / "service-account.json"
    credentials.write_text("{}")
    env = {"DEVSTACK_STATE_DIR": str(tmp_path), "GOOGLE_APPLICATION_CREDENTIALS": str(credentials)}
    result = manage(env, "shell", "-v", "0", "-c", PRINT_FIREBASE_SETTINGS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "''"


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"DJANGO_DEBUG": "true"}, "DJANGO_DEBUG must be off"),
        ({"DJANGO_SECRET_KEY": "short-secret"}, "DJANGO_SECRET_KEY must have at least 50 characters"),
        ({"DJANGO_SECRET_KEY": "ab" * 30}, "DJANGO_SECRET_KEY must have at least 50 characters"),
        ({"LISTENERS_SERVICE_TOKEN": "short-token"}, "LISTENERS_SERVICE_TOKEN must have at least 32 characters"),
        ({"LISTENERS_WS_TRUSTED_NETWORKS": "10.0.0.0/8,0.0.0.0/0"}, "may not trust every address"),
        ({"LISTENERS_WS_TRUSTED_NETWORKS": "::/0"}, "may not trust every address"),
    ],
)
def test_prod_refuses_weak_settings(tmp_path: Path, override: dict[str, str], named: str) -> None:
    result = manage({**complete_prod_env(tmp_path), **override}, "check")
    assert result.returncode != 0
    assert named in result.stderr.strip().splitlines()[-1]


def test_local_mode_signs_with_a_random_key_kept_in_its_state_dir(tmp_path: Path) -> None:
    """Tokens signed by one checkout's dev stack are worthless against another's (README, Security)."""
    def key(state_dir: Path) -> str:
        result = manage({"DEVSTACK_STATE_DIR": str(state_dir)}, "shell", "-v", "0", "-c",
                        "from django.conf import settings; print(settings.SECRET_KEY)")
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    first, again, other = key(tmp_path / "a"), key(tmp_path / "a"), key(tmp_path / "b")
    assert first == again != other and len(first) >= 50
    assert (tmp_path / "a" / "secret-key").stat().st_mode & 0o077 == 0  # readable by its owner only
