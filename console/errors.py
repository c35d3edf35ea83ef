"""The one business-error type and the one place that turns it into an HTTP answer.

Services raise ``VoxfleetError`` subclasses; API views never build error responses by
hand. The OpenAI-compatible endpoints render the same error in OpenAI's shape.

The error types import nothing: a GPU host (``python -m fleetagent``) raises them from the
engine layer without Django, so Django and DRF are imported only by the functions that
render an answer.
"""

from __future__ import annotations


class VoxfleetError(Exception):
    """A refusal a user can cause: carries a stable code, a message and an HTTP status."""

    code = "invalid_request"
    status = 400
    # OpenAI's error "type" for /v1 endpoints.
    openai_type = "invalid_request_error"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None, **extra):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.extra = extra
        self.headers: dict[str, str] = {}
        if self.status == 503:
            # Unavailable for now (no node online, a job the fleet could not run): say when to retry.
            self.headers["Retry-After"] = str(RETRY_AFTER_S)

    def as_dict(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


class NotFound(VoxfleetError):
    code = "not_found"
    status = 404


class PermissionDenied(VoxfleetError):
    code = "permission_denied"
    status = 403


class Conflict(VoxfleetError):
    code = "conflict"
    status = 409


class RequestBodyTooLarge(VoxfleetError):
    """The request body (or one uploaded file) is over the cap; refused while it streams in."""

    code = "request_too_large"
    status = 413


class ServiceUnavailable(VoxfleetError):
    """A part the request needs (e.g. Redis for rate limits) is unreachable; retry later."""

    code = "service_unavailable"
    status = 503

    def __init__(self, message: str, *, retry_after: int = 5, **kwargs):
        super().__init__(message, **kwargs)
        self.headers["Retry-After"] = str(max(1, int(retry_after)))


def api_exception_handler(exc, context):
    """DRF handler: VoxfleetError and DRF's own errors share one JSON shape."""
    from rest_framework import exceptions as drf_exceptions
    from rest_framework.response import Response
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, VoxfleetError):
        return Response(exc.as_dict(), status=exc.status, headers=exc.headers)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, drf_exceptions.ValidationError):
        body = {"error": {"code": "invalid_request", "message": "Invalid input.", "fields": response.data}}
    else:
        code = getattr(exc, "default_code", "error")
        detail = response.data.get("detail", str(exc)) if isinstance(response.data, dict) else str(exc)
        body = {"error": {"code": code, "message": str(detail)}}
    response.data = body
    return response


# --- Errors outside any API view (unknown URLs, Django's own 400/500) -------------------
#
# Under /api/ and /v1/ every answer is JSON in that API's shape, also for a URL no view
# matches (Django would answer with an HTML page, or under DEBUG its whole URLconf).

API_PREFIXES = ("/api/", "/v1/", "/fleet/")


def _api_error_response(request, *, status: int, code: str, message: str):
    """A JsonResponse in the API's shape under /api/ and /v1/, else None."""
    from django.http import JsonResponse

    path = request.path
    if path.startswith("/v1/"):
        type_ = "invalid_request_error" if status < 500 else "server_error"
        body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    elif path.startswith(("/api/", "/ops/api/", "/fleet/")):
        body = {"error": {"code": code, "message": message}}
    else:
        return None
    return JsonResponse(body, status=status)


def api_not_found(request, *args, **kwargs):
    """The catch-all under /api/ and /v1/ (console/urls.py): a JSON 404 naming the URL."""
    return _api_error_response(
        request, status=404, code="not_found", message=f"There is no {request.method} {request.path} in this API."
    )


# What django.views.decorators.csrf.csrf_exempt sets (without importing Django here): nothing to
# protect, and a CSRF refusal would answer HTML instead of the 404.
api_not_found.csrf_exempt = True


def handler400(request, exception=None):
    from django.views import defaults as django_defaults

    return _api_error_response(
        request, status=400, code="bad_request", message="The request could not be understood."
    ) or django_defaults.bad_request(request, exception)


def handler404(request, exception=None):
    from django.views import defaults as django_defaults

    return _api_error_response(
        request, status=404, code="not_found", message=f"There is no {request.method} {request.path} in this API."
    ) or django_defaults.page_not_found(request, exception)


def handler500(request):
    """What escaped every view and middleware: a database fault (e.g. PostgreSQL restarting) is a
    503 with Retry-After (the request can simply be retried); any other crash a 500 — JSON
    under the APIs, Django's page elsewhere."""
    import sys

    from django.db import DatabaseError
    from django.views import defaults as django_defaults

    if isinstance(sys.exc_info()[1], DatabaseError):
        return database_fault_response(request)
    return _api_error_response(
        request, status=500, code="server_error", message="Something went wrong on our side; it has been logged."
    ) or django_defaults.server_error(request)


def csrf_failure(request, reason=""):
    """CSRF_FAILURE_VIEW: JSON 403 under the APIs, Django's page elsewhere."""
    from django.views import csrf as django_csrf

    return _api_error_response(
        request, status=403, code="csrf_failed", message=f"CSRF check failed: {reason}"
    ) or django_csrf.csrf_failure(request, reason=reason)


# --- faults: the database (or another backing service) is down --------------------------------

# Seconds a client is asked to wait before retrying while a backing service is down.
RETRY_AFTER_S = 5
_OPENAI_PREFIX = "/v1/"
_JSON_PREFIXES = ("/v1/", "/api/", "/ops/api/", "/fleet/", "/healthz")


def _wants_json(request) -> bool:
    path = request.path or ""
    return path.startswith(_JSON_PREFIXES) or "application/json" in request.headers.get("Accept", "")


def fault_response(request, *, status: int, code: str, message: str):
    """An error in the API's own shape (OpenAI's under /v1, ours elsewhere), never an HTML page."""
    from django.http import JsonResponse

    if (request.path or "").startswith(_OPENAI_PREFIX):
        body = {"error": {"message": message, "type": "server_error", "param": None, "code": code}}
    else:
        body = {"error": {"code": code, "message": message}}
    response = JsonResponse(body, status=status)
    if status == 503:
        response["Retry-After"] = str(RETRY_AFTER_S)
    return response


def database_fault_response(request, *, part: str = "database"):
    """503 + Retry-After: JSON for API clients, a short plain-text answer for pages."""
    from django.http import HttpResponse

    if _wants_json(request):
        return fault_response(
            request,
            status=503,
            code="service_unavailable",
            message=f"The service is briefly unavailable (its {part} is not answering); nothing was charged. "
            "Retry shortly.",
        )
    response = HttpResponse(
        "Voxfleet is briefly unavailable. Please retry in a few seconds.", status=503, content_type="text/plain"
    )
    response["Retry-After"] = str(RETRY_AFTER_S)
    return response
