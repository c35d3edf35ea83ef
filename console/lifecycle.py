"""This process's life: whether it is stopping.

A console process asked to stop (SIGTERM or SIGINT, as uvicorn handles them) first waits for
the requests in flight. A speech request waits for its job, and a GPU host can only finish
that job over a websocket the stopping server has just closed, so without a word the server
would wait out the job's deadline (two minutes). ``stop_signals_chain`` (called from the ASGI
lifespan's startup, once the server has installed its own handlers) runs ``stopping_begin``
before the server's handler; whoever waits registers ``on_stopping`` and answers at once.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_stopping = threading.Event()
_callbacks: list[Callable[[], None]] = []


def on_stopping(callback: Callable[[], None]) -> None:
    """Call ``callback`` (from the signal handler: keep it short, no blocking) when stopping begins."""
    _callbacks.append(callback)


def is_stopping() -> bool:
    return _stopping.is_set()


def stopping_begin() -> None:
    if _stopping.is_set():
        return
    _stopping.set()
    for callback in list(_callbacks):
        try:
            callback()
        except Exception:  # noqa: BLE001 - one waiter's failure must not keep the others waiting
            logger.exception("stopping callback %r failed", callback)


def stop_signals_chain() -> bool:
    """Run ``stopping_begin`` before the current SIGINT/SIGTERM handlers; whether it could
    (only the main thread may set handlers, and a default or ignored handler is left alone)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    chained = False
    for sig in STOP_SIGNALS:
        previous = signal.getsignal(sig)
        if not callable(previous) or getattr(previous, "voxfleet_chained", False):
            continue

        def handler(signum, frame, previous=previous):
            stopping_begin()
            previous(signum, frame)

        handler.voxfleet_chained = True
        signal.signal(sig, handler)
        chained = True
    return chained


def stopping_reset() -> None:
    """For tests: this process is running again."""
    _stopping.clear()
