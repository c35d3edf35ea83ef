"""The public OpenAPI schema (/api/schema/): which endpoints it shows, and the error answers
every operation can give, each with its body schema.

Hooks for drf-spectacular (SPECTACULAR_SETTINGS in console/settings.py):

- ``public_endpoints_only`` keeps the tenant REST API (/api/v1/) and the OpenAI-compatible
  API (/v1/); the ops dashboard's JSON (/ops/api/) is a staff-session internal of that page.
- ``error_responses`` documents, on every operation, the statuses the request pipeline can
  answer besides the view's own: 400 (invalid input or query parameters), 401 (no or a bad
  key), 403 (a suspended tenant, a plan gate, a key's scope), 404, 413 (a body over the
  streaming cap), 429 and 503 (rate/concurrency limits, quota, limits unavailable, no node),
  in the one error shape of that API: ``{"error": {"code", "message"}}`` under /api/ and
  OpenAI's ``{"error": {"message", "type", "param", "code"}}`` under /v1/.
"""

from __future__ import annotations

PUBLIC_PREFIXES = ("/api/v1/", "/v1/")

_VOXFLEET_ERROR = {
    "type": "object",
    "description": 'Every refusal: {"error": {"code": "...", "message": "..."}}, plus details for some codes.',
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "Stable, machine-readable (e.g. insufficient_quota)."},
                "message": {"type": "string", "description": "What is wrong and what to do, for people."},
                "fields": {"type": "object", "description": "Per-field problems of invalid input."},
            },
            "additionalProperties": True,
        }
    },
}
_OPENAI_ERROR = {
    "type": "object",
    "description": "OpenAI's error shape.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": "string", "nullable": True},
                "code": {"type": "string", "nullable": True},
            },
        }
    },
}

# status -> (description, only for operations that ...): "body" = take a request body,
# "limited" = pass the rate/concurrency limits and reserve tokens, None = every operation.
_ERRORS = {
    "400": ("Invalid input or query parameters (code, message; fields for invalid input).", None),
    "401": ("No API key, or an invalid or revoked one.", None),
    "403": ("Refused: a suspended tenant, a feature the plan lacks, or a scope the API key lacks.", None),
    "404": ("No such object (another tenant's objects are not found either), or no such URL.", None),
    "413": ("The request body or an uploaded file is over the size limit (refused while streaming).", "body"),
    "429": (
        "insufficient_quota (allowance and top-ups spent), rate_limit_exceeded (see Retry-After), "
        "or api_key_cap_reached (the key's monthly token cap).",
        "limited",
    ),
    "503": ("No node can take the job, or rate limiting is unavailable (see Retry-After).", "limited"),
}
# Operations that pass request_admit / job_slot_acquire and reserve tokens.
_LIMITED = {"jobs_create", "audio_speech_create"}


# OpenAPI links, for clients and for schemathesis' stateful phase: what a create returns
# feeds the operations on that object.
_LINKS = {
    ("/api/v1/jobs", "post", "202"): {
        "GetJob": ("jobs_retrieve", "job_id"),
        "GetJobAudio": ("jobs_audio", "job_id"),
        "CancelJob": ("jobs_cancel", "job_id"),
    },
    ("/api/v1/voices", "post", "201"): {
        "GetVoice": ("voices_retrieve", "voice_id"),
        "RenameVoice": ("voices_rename", "voice_id"),
        "DeleteVoice": ("voices_delete", "voice_id"),
    },
}


def public_endpoints_only(endpoints):
    return [e for e in endpoints if e[0].startswith(PUBLIC_PREFIXES)]


def _request_names_tidy(result: dict) -> dict:
    """COMPONENT_SPLIT_REQUEST names request components ``<serializer>Request``; a serializer
    already called ``...Request`` (SpeechRequest) would read ``SpeechRequestRequest``."""
    schemas = result.get("components", {}).get("schemas", {})
    renames = {
        name: name[: -len("Request")]
        for name in schemas
        if name.endswith("RequestRequest") and name[: -len("Request")] not in schemas
    }
    if not renames:
        return result
    refs = {f"#/components/schemas/{old}": f"#/components/schemas/{new}" for old, new in renames.items()}

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str) and node["$ref"] in refs:
                node["$ref"] = refs[node["$ref"]]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(result)
    for old, new in renames.items():
        schemas[new] = schemas.pop(old)
    return result


def error_responses(result, generator, request, public):
    result = _request_names_tidy(result)
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = _VOXFLEET_ERROR
    schemas["OpenAIError"] = _OPENAI_ERROR
    for path, operations in result.get("paths", {}).items():
        ref = {"$ref": "#/components/schemas/" + ("OpenAIError" if path.startswith("/v1/") else "Error")}
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            for status, (description, only) in _ERRORS.items():
                if only == "body" and "requestBody" not in operation:
                    continue
                if only == "limited" and operation.get("operationId") not in _LIMITED:
                    continue
                response = responses.setdefault(status, {"description": description})
                if status in ("429", "503"):
                    response.setdefault(
                        "headers", {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}}
                    )
                response.setdefault("content", {"application/json": {"schema": ref}})
            # A view's own refusals (409 name taken, not finished...) share the shape.
            for status, response in responses.items():
                if status >= "400" and isinstance(response, dict):
                    response.setdefault("content", {"application/json": {"schema": ref}})
    for (path, method, status), links in _LINKS.items():
        response = result.get("paths", {}).get(path, {}).get(method, {}).get("responses", {}).get(status)
        if response is not None:
            response["links"] = {
                name: {"operationId": op, "parameters": {param: "$response.body#/id"}}
                for name, (op, param) in links.items()
            }
    return result
