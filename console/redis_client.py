"""The process's Redis client for ``settings.REDIS_URL`` (one connection pool per URL and process).

A base module like ``console.env``: it imports no app, and every app that talks to Redis
directly (the job-done signals, billing's rate limits) takes its client from here.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    import redis

_clients: dict[str, redis.Redis] = {}
_lock = threading.Lock()


def redis_client(url: str | None = None) -> redis.Redis:
    """The shared client for ``url`` (default ``settings.REDIS_URL``); created on first use.

    Keyed by URL so a process (or a test) that points REDIS_URL elsewhere gets a client for
    that server, not a stale one for the old.
    """
    url = url or settings.REDIS_URL
    if not url:
        raise RuntimeError("REDIS_URL is not set: this process has no Redis (the embedded default).")
    client = _clients.get(url)
    if client is None:
        with _lock:
            client = _clients.get(url)
            if client is None:
                import redis

                client = _clients[url] = redis.Redis.from_url(url)
    return client
