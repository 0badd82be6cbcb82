from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class RegistryConfig(AppConfig):
    name = "registry"
    verbose_name = "Session registry"
    default = True


class GatewayAdminConfig(admin_apps.AdminConfig):
    """The admin with the gateway's site (dashboard pages); listed in INSTALLED_APPS instead of django.contrib.admin."""

    default = False  # "registry" in INSTALLED_APPS means RegistryConfig
    default_site = "registry.admin_site.GatewayAdminSite"
