"""``X-Request-Id`` on every response, as OpenAI's API sends one (clients log it with errors).

A well-formed id from the client (or a proxy in front of us) is kept, so one request can
be followed across systems; otherwise a new one is made. Works for sync and async views.
"""

from __future__ import annotations

import re
import uuid

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

HEADER = "X-Request-Id"
_WELL_FORMED = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_for(incoming: str | None) -> str:
    if incoming and _WELL_FORMED.match(incoming):
        return incoming
    return f"req_{uuid.uuid4().hex}"


class RequestIdMiddleware:
    """Sets ``request.request_id`` and the response's ``X-Request-Id``."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        request.request_id = request_id_for(request.headers.get(HEADER))
        response = self.get_response(request)
        response[HEADER] = request.request_id
        return response

    async def _acall(self, request):
        request.request_id = request_id_for(request.headers.get(HEADER))
        response = await self.get_response(request)
        response[HEADER] = request.request_id
        return response
