from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from . import health
from .access import token_required_in_prod

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("version", health.version, name="version"),
    path("debug", health.debug, name="debug"),
    path("metrics", token_required_in_prod(health.metrics), name="metrics"),
    path("openapi.json", token_required_in_prod(SpectacularAPIView.as_view()), name="openapi"),
    path("", include("rpc.urls")),
    path("", include("billing.urls")),
    path("admin/", admin.site.urls),
]
