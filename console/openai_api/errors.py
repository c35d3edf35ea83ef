"""OpenAI's error shape for the /v1 endpoints: {"error": {"message", "type", "param", "code"}}."""

from __future__ import annotations

from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response

from console.errors import VoxfleetError
from inference.text import InstructionInvalid, TextInvalid

# Which request field a refusal is about, when the error itself does not say.
_PARAM_BY_TYPE = ((TextInvalid, "input"), (InstructionInvalid, "instructions"))
_PARAM_BY_CODE = {"voice_not_found": "voice", "invalid_seed": "seed", "invalid_speed": "speed"}


def _body(*, message: str, type_: str, code: str | None, param: str | None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def openai_error_response(exc: VoxfleetError) -> Response:
    param = exc.extra.get("param")
    if param is None and exc.code == "feature_not_in_plan":
        # A language gate is about the text; dialect/emotion/style gates about the instruction.
        param = "input" if str(exc.extra.get("feature", "")).startswith("language") else "instructions"
    if param is None:
        param = _PARAM_BY_CODE.get(exc.code)
        for cls, name in _PARAM_BY_TYPE:
            if isinstance(exc, cls):
                param = name
    type_ = exc.openai_type
    if exc.status >= 500 and type_ == VoxfleetError.openai_type:
        type_ = "server_error"
    return Response(
        _body(message=exc.message, type_=type_, code=exc.code, param=param), status=exc.status, headers=exc.headers
    )


def openai_exception_handler(exc, context):
    """DRF exception handler for /v1 views."""
    if isinstance(exc, VoxfleetError):
        return openai_error_response(exc)
    if isinstance(exc, drf_exceptions.NotAuthenticated):
        body = _body(
            message="You didn't provide an API key. Send 'Authorization: Bearer <api key>'.",
            type_="invalid_request_error",
            code="missing_api_key",
            param=None,
        )
        return Response(body, status=401, headers={"WWW-Authenticate": 'Bearer realm="voxfleet"'})
    if isinstance(exc, drf_exceptions.AuthenticationFailed):
        body = _body(message=str(exc.detail), type_="invalid_request_error", code="invalid_api_key", param=None)
        return Response(body, status=401, headers={"WWW-Authenticate": 'Bearer realm="voxfleet"'})
    if isinstance(exc, drf_exceptions.ValidationError):
        detail = exc.detail
        if isinstance(detail, dict) and detail:
            field, problems = next(iter(detail.items()))
            problem = problems[0] if isinstance(problems, list) and problems else problems
            message = f"{field}: {problem}" if field != "non_field_errors" else str(problem)
            param = None if field == "non_field_errors" else field
        else:
            message, param = str(detail), None
        return Response(_body(message=message, type_="invalid_request_error", code="invalid_value", param=param), 400)
    if isinstance(exc, drf_exceptions.APIException):
        type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
        code = exc.default_code if isinstance(exc.default_code, str) else None
        return Response(_body(message=str(exc.detail), type_=type_, code=code, param=None), status=exc.status_code)
    return None
