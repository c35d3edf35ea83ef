"""A database fault during a request is a JSON 503 with ``Retry-After``, with DEBUG on too.

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


class DatabaseFaultMiddleware(MiddlewareMixin):
    def process_exception(self, request, exception):
        if isinstance(exception, DatabaseError):
            logger.warning("database fault on %s: %s", request.path, exception)
            return database_fault_response(request)
        return None
