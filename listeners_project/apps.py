from django.apps import AppConfig
from django.conf import settings


class GatewayConfig(AppConfig):
    name = "listeners_project"
    verbose_name = "Realtime gateway"

    def ready(self) -> None:
        from .logging import configure_logging

        configure_logging(settings.LOG_LEVEL)
