"""``/fleet/v1/``: what a GPU host fetches from the console over HTTP(S) with its node token.

A host that runs jobs with no database (agent protocol v3, fleetagent.protocol) gets a cloned
voice's prompt audio here, for a job it was handed, and caches it per voice version (the
``ETag``). ``Authorization: Bearer vfn_…`` only: no session, no cookie, nothing a browser
sends. A malformed credential is a 401 (never a 500), and any job that is not queued or running
on the presenting node is a 404, whoever's it is.
"""

from __future__ import annotations

import mimetypes

from django.http import FileResponse, HttpResponseNotModified
from django.views.decorators.http import require_GET

from console.credentials import bearer_token
from console.errors import NotFound, fault_response
from fleetagent.services import node_authenticate
from inference.selectors import job_prompt_audio_for_node


@require_GET
def job_prompt_audio(request, job_id: int):
    try:
        node = node_authenticate(token=bearer_token(request.headers.get("Authorization")) or "")
    except NotFound as exc:
        response = fault_response(request, status=401, code=exc.code, message="A valid node token is required.")
        response["WWW-Authenticate"] = 'Bearer realm="fleet"'
        return response
    try:
        path, version = job_prompt_audio_for_node(node_id=node.pk, job_id=job_id)
    except NotFound as exc:
        return fault_response(request, status=404, code=exc.code, message=exc.message)
    etag = f'"{version}"'
    if request.headers.get("If-None-Match") == etag:
        response = HttpResponseNotModified()
    else:
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        response = FileResponse(path.open("rb"), content_type=content_type)
    response["ETag"] = etag
    response["Cache-Control"] = "private, no-store"  # the host keeps its own cache, per version
    return response
