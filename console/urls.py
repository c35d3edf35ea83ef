"""Top-level URL map: each app mounts its own ``urls`` module here."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from console.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/v1/", include("inference.api.urls")),
    path("v1/", include("console.openai_api.urls")),
    path("billing/", include("billing.urls")),
    path("", include("console.ops.urls")),
    path("", include("console.portal.urls")),
]

# Faults (the database down) and crashes: JSON in the API's error shape for API clients.
handler500 = "console.errors.server_error"
