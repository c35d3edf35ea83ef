"""Request bodies are capped while they stream in, before anything is parsed or decoded.

Three places, one limit each (console/settings.py, from the environment):

- ``body_cap_asgi`` wraps the ASGI app: a declared ``Content-Length`` over
  ``REQUEST_BODY_MAX_BYTES`` is answered 413 before one byte is read, and a chunked body is
  counted as it arrives and cut off (413) the moment it passes the cap. Django's ASGI handler
  otherwise spools any body, however large, before the view runs.
- ``RequestBodyCapMiddleware`` does the same ``Content-Length`` check for other servers (and
  the test client), and turns a ``RequestBodyTooLarge`` raised while parsing into the 413.
- ``CappedUploadHandler`` (first of ``FILE_UPLOAD_HANDLERS``) counts each uploaded file's
  bytes as the multipart parser streams them and stops at ``UPLOAD_FILE_MAX_BYTES``; small
  files stay in memory, larger ones go to a temporary file (Django's own handlers), so no
  upload is ever held whole in memory past ``FILE_UPLOAD_MAX_MEMORY_SIZE``.
"""

from __future__ import annotations

import json

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler
from django.http import JsonResponse

from console.errors import RequestBodyTooLarge


def _too_large_message(limit: int) -> str:
    return f"The request body is over the {limit / 1_048_576:.1f} MB limit."


def _too_large_body(limit: int) -> bytes:
    return json.dumps(RequestBodyTooLarge(_too_large_message(limit), limit_bytes=limit).as_dict()).encode()


class CappedUploadHandler(FileUploadHandler):
    """Refuses an uploaded file as soon as more than ``UPLOAD_FILE_MAX_BYTES`` of it arrived."""

    def __init__(self, request=None):
        super().__init__(request)
        self.limit = int(settings.UPLOAD_FILE_MAX_BYTES)
        self.received = 0

    def new_file(self, *args, **kwargs):
        self.received = 0
        super().new_file(*args, **kwargs)

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.limit:
            raise RequestBodyTooLarge(
                f"The uploaded file is over the {self.limit / 1_048_576:.1f} MB limit.", limit_bytes=self.limit
            )
        return raw_data  # the next handler (memory, then temporary file) stores it

    def file_complete(self, file_size):
        return None


def _declared_length(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class RequestBodyCapMiddleware:
    """A declared body over REQUEST_BODY_MAX_BYTES is refused unread; parse-time caps become 413.

    Runs in either mode (the handler's), so it never makes Django hop between the event loop
    and a thread."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request):
        refused = self._refusal(request)
        if self._async:
            return self._acall(request, refused)
        return refused if refused is not None else self.get_response(request)

    async def _acall(self, request, refused):
        return refused if refused is not None else await self.get_response(request)

    def _refusal(self, request):
        limit = int(settings.REQUEST_BODY_MAX_BYTES)
        length = _declared_length(request.META.get("CONTENT_LENGTH"))
        return self._refuse(limit) if length is not None and length > limit else None

    def process_exception(self, request, exception):
        if isinstance(exception, RequestBodyTooLarge):
            return JsonResponse(exception.as_dict(), status=exception.status)
        return None

    @staticmethod
    def _refuse(limit: int):
        exc = RequestBodyTooLarge(_too_large_message(limit), limit_bytes=limit)
        return JsonResponse(exc.as_dict(), status=exc.status)


def body_cap_asgi(app):
    """Wrap an ASGI app so HTTP request bodies past REQUEST_BODY_MAX_BYTES are cut off while streaming."""

    async def capped(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        limit = int(settings.REQUEST_BODY_MAX_BYTES)
        headers = dict(scope.get("headers") or [])
        length = _declared_length(headers.get(b"content-length", b"").decode("latin-1") or None)

        async def refuse():
            await send(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
                }
            )
            await send({"type": "http.response.body", "body": _too_large_body(limit)})

        if length is not None and length > limit:
            return await refuse()
        state = {"received": 0, "refused": False}

        async def counting_receive():
            message = await receive()
            if message["type"] == "http.request" and not state["refused"]:
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    state["refused"] = True
                    await refuse()
                    # Django's handler stops reading on a disconnect and answers nothing.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if not state["refused"]:
                await send(message)

        return await app(scope, counting_receive, guarded_send)

    return capped
