from django.apps import AppConfig


class RpcConfig(AppConfig):
    name = "rpc"
    verbose_name = "RPC gateway"

    def ready(self) -> None:
        from .registry import autodiscover

        autodiscover()
