from django.apps import AppConfig
from django.conf import settings
from django.contrib.admin import apps as admin_apps


class GatewayConfig(AppConfig):
    name = "listeners_project"
    verbose_name = "Realtime gateway"

    def ready(self) -> None:
        from core import memtrace
        from core.logging import configure_logging

        configure_logging(settings.LOG_LEVEL)
        memtrace.install_from_env()  # soak runs only (bench/soak.py --tracemalloc)


class GatewayAdminConfig(admin_apps.AdminConfig):
    """The admin with the gateway's site (dashboard pages); listed in INSTALLED_APPS instead of django.contrib.admin."""

    default_site = "listeners_project.admin_site.GatewayAdminSite"
