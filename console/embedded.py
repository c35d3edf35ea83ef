"""Services that run inside the ASGI process on the embedded default (no REDIS_URL).

On the embedded default one ``uvicorn console.asgi:application`` is the whole product: the
local node's agent and the job executor start with the application (ASGI lifespan) and
stop with it. With REDIS_URL set they run as their own processes instead.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)

# Each entry is an async callable returning an async ``stop`` callable.
EMBEDDED_SERVICES: list[str] = [
    "fleetagent.embedded.local_agent_start",
    "inference.embedded.start",
]

_stops: list = []


async def embedded_start() -> None:
    if not settings.EMBEDDED:
        return
    for dotted in EMBEDDED_SERVICES:
        logger.info("starting embedded service %s", dotted)
        _stops.append(await import_string(dotted)())


async def embedded_stop() -> None:
    while _stops:
        stop = _stops.pop()
        try:
            await stop()
        except Exception:  # noqa: BLE001 - keep stopping the rest
            logger.exception("embedded service failed to stop cleanly")
