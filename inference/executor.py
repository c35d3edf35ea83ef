"""The in-process job executor of the embedded default (no REDIS_URL, no Celery).

One thread runs submitted work in order (prefetch 1, like a node's worker), so the event
loop keeps serving requests. This module only runs what it is handed: what a job run is
(``inference.services``) and when the executor starts (``inference.embedded``) live above.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

logger = logging.getLogger(__name__)

_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def executor_submit(fn: Callable, /, *args) -> bool:
    """Run ``fn(*args)`` on the executor thread; False when the executor is not running."""
    with _lock:
        executor = _executor
        if executor is None:
            return False
        executor.submit(fn, *args)
        return True


def executor_start(*, first: Callable[[], None] | None = None) -> bool:
    """Start the executor thread; ``first`` runs before anything submitted after this call.

    False if it was already running (``first`` is then not run).
    """
    global _executor
    with _lock:
        if _executor is not None:
            return False
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synthesis")
        if first is not None:
            _executor.submit(first)
        return True


def executor_stop(*, wait: bool = True) -> None:
    global _executor
    with _lock:
        executor, _executor = _executor, None
    if executor is not None:
        executor.shutdown(wait=wait, cancel_futures=True)
