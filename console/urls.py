"""Top-level URL map: each app mounts its own ``urls`` module here."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from console import errors, fleet_api
from console.health import healthz

# Outside any view (no URL matched, a SuspiciousOperation, a crash): JSON under /api/ and /v1/.
handler400 = errors.handler400
handler404 = errors.handler404
handler500 = errors.handler500

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/v1/", include("inference.api.urls")),
    path("v1/", include("console.openai_api.urls")),
    # GPU hosts (node token): prompt audio for the jobs they were handed.
    path("fleet/v1/jobs/<int:job_id>/prompt-audio", fleet_api.job_prompt_audio, name="fleet-job-prompt-audio"),
    # Any other URL under the APIs is a JSON 404 in the API's own shape (even under DEBUG).
    re_path(r"^(?:api|v1|fleet)/", errors.api_not_found, name="api-not-found"),
    path("billing/", include("billing.urls")),
    path("", include("console.ops.urls")),
    path("", include("console.portal.urls")),
]

# Faults (the database down) and crashes: JSON in the API's error shape for API clients.
