"""``/metrics``: the whole fleet in Prometheus text format, named like dcgm-exporter.

What is exposed is console.prometheus (prometheus_client). Readable by a staff session or
``Authorization: Bearer <METRICS_TOKEN>`` (Prometheus scrapers).
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.http import require_GET

from console.prometheus import CONTENT_TYPE, metrics_text


def _token_ok(request) -> bool:
    expected = settings.METRICS_TOKEN
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if not expected or scheme.lower() != "bearer":
        return False
    # Bytes, not str: compare_digest raises TypeError on non-ASCII text, and any credential a
    # client can send must come back as 401, never 500. Headers arrive decoded as latin-1.
    return hmac.compare_digest(token.strip().encode("latin-1", "replace"), expected.encode())


@require_GET
def metrics(request):
    if not (_token_ok(request) or (request.user.is_authenticated and request.user.is_staff)):
        return HttpResponse(
            "Staff session or Authorization: Bearer <METRICS_TOKEN> required.\n",
            status=401 if not request.user.is_authenticated else 403,
            content_type="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE)
