from django.apps import AppConfig


class DevstackConfig(AppConfig):
    """Installed only for its ``manage.py devstack`` command; it has no models and nothing at import time."""

    name = "devstack"
    verbose_name = "Development stack"
