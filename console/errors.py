"""The one business-error type and the one place that turns it into an HTTP answer.

Services raise ``VoxfleetError`` subclasses; API views never build error responses by
hand. The OpenAI-compatible endpoints render the same error in OpenAI's shape.
"""

from __future__ import annotations

from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


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


def api_exception_handler(exc, context):
    """DRF handler: VoxfleetError and DRF's own errors share one JSON shape."""
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


# --- faults: the database (or another backing service) is down --------------------------------

# Seconds a client is asked to wait before retrying while a backing service is down.
RETRY_AFTER_S = 5
_OPENAI_PREFIX = "/v1/"
_JSON_PREFIXES = ("/v1/", "/api/", "/healthz")


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


def server_error(request, *args, **kwargs):
    """``handler500``: what escaped every view and middleware (e.g. PostgreSQL restarting).

    A database fault is a 503 with ``Retry-After`` (the request can simply be retried); any
    other crash is a 500 — both as JSON for API clients. Pages for browsers keep Django's
    error page for crashes, and get a short 503 answer for faults.
    """
    import sys

    from django.db import DatabaseError
    from django.views.defaults import server_error as django_server_error

    exc = sys.exc_info()[1]
    if isinstance(exc, DatabaseError):
        return database_fault_response(request)
    if _wants_json(request):
        return fault_response(request, status=500, code="server_error", message="Internal server error.")
    return django_server_error(request)


def database_fault_response(request):
    """503 + Retry-After: JSON for API clients, a short plain-text answer for pages."""
    from django.http import HttpResponse

    if _wants_json(request):
        return fault_response(
            request,
            status=503,
            code="service_unavailable",
            message="The service is briefly unavailable (its database is not answering); nothing was charged. "
            "Retry shortly.",
        )
    response = HttpResponse(
        "Voxfleet is briefly unavailable. Please retry in a few seconds.", status=503, content_type="text/plain"
    )
    response["Retry-After"] = str(RETRY_AFTER_S)
    return response
