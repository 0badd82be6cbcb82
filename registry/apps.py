from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "registry"
    verbose_name = "Session registry"

    def ready(self) -> None:
        from realtime.auth import set_user_token_validator

        from .ws_tokens import accepts

        set_user_token_validator(accepts)  # realtime sits below the registry: it is handed the check
