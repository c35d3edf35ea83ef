"""A database or Redis fault during a request is a JSON 503 with ``Retry-After``, with DEBUG on too.

``handler500`` (``console.errors.handler500``) is not called with ``DEBUG`` on (Django
renders its HTML debug page instead). This middleware sees the exception first
(``process_exception``: everything a view raises, including DRF's authentication reading
API keys) and answers in the API's error shape; handler500 covers what is raised outside views.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError
from django.utils.deprecation import MiddlewareMixin

from console.errors import database_fault_response

logger = logging.getLogger(__name__)


def fault_part(exception: BaseException) -> str | None:
    """The backing service an exception says is down (PostgreSQL, or Redis: channel layer,
    cache, broker), or None for any other error."""
    if isinstance(exception, DatabaseError):
        return "database"
    import redis

    if isinstance(exception, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        return "Redis"
    return None


class DatabaseFaultMiddleware(MiddlewareMixin):
    def process_exception(self, request, exception):
        part = fault_part(exception)
        if part is not None:
            logger.warning("%s fault on %s: %s", part, request.path, exception)
            return database_fault_response(request, part=part)
        return None
