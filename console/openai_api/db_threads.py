"""Run the synchronous speech endpoint's database work on long-lived threads.

Under ASGI, Django runs each request's sync code on a fresh thread, and Django's database
connections belong to a thread: every request would open (and later drop) its own
PostgreSQL connection, 10–30 ms on a busy host, which is most of the API's overhead budget.
These threads keep their connections (CONN_MAX_AGE), and each call does what Django does
around a request (``close_old_connections``) so a broken or expired connection is replaced.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.db import close_old_connections

T = TypeVar("T")
DB_THREADS = 16

_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(max_workers=DB_THREADS, thread_name_prefix="api-db")
    return _pool


def _call(fn: Callable[..., T], args, kwargs) -> T:
    close_old_connections()
    try:
        return fn(*args, **kwargs)
    finally:
        close_old_connections()


def db_thread_run(fn: Callable[..., T], *args, **kwargs) -> T:
    """``fn(*args, **kwargs)`` on a database thread; returns its result or raises its exception."""
    return _executor().submit(_call, fn, args, kwargs).result()
