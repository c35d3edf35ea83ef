"""Job-done signals: the synchronous speech endpoint wakes as soon as a job finishes.

The job may run in another process (a node's Celery worker): the finishing process
publishes on a Redis channel; waiters in the console keep one subscriber thread per process.
The database stays the source of truth: waiters always re-read the job, and poll it at a
slow pace in case a signal is lost. (The loaded engine is ``inference.engines.registry``;
job listeners are ``inference.listeners``.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings

from console.lifecycle import is_stopping, on_stopping
from console.redis_client import redis_client

logger = logging.getLogger(__name__)

JOB_DONE_CHANNEL = "voxfleet:inference:job-done"

_waiters: dict[int, list[threading.Event]] = {}
_waiters_lock = threading.Lock()
_subscriber: threading.Thread | None = None
_subscribed = threading.Event()


def _wake_local(job_id: int) -> None:
    with _waiters_lock:
        events = list(_waiters.get(job_id, ()))
    for event in events:
        event.set()


def job_done_notify(*, job_id: int, ended: dict | None = None) -> None:
    """Tell waiters (in this process and, with Redis, in every console process) a job finished;
    ``ended`` (how, ``inference.streaming.job_audio_end``) goes to its stream's listeners."""
    from inference.streaming import job_audio_end

    _wake_local(job_id)
    job_audio_end(job_id=job_id, ended=ended)  # streaming listeners stop reading
    if settings.REDIS_URL:
        try:
            redis_client().publish(JOB_DONE_CHANNEL, str(job_id))
        except Exception:  # noqa: BLE001 - waiters poll the database as a fallback
            logger.warning("could not publish job-done for job %s", job_id, exc_info=True)


def _wake_all() -> None:
    """The process is stopping (console.lifecycle): every waiter answers now, without its job."""
    with _waiters_lock:
        events = [event for waiting in _waiters.values() for event in waiting]
    for event in events:
        event.set()


on_stopping(_wake_all)


def _subscribe_forever() -> None:
    while True:
        try:
            # Leaving the block hands the connection back to the shared client's pool.
            with redis_client().pubsub(ignore_subscribe_messages=True) as pubsub:
                pubsub.subscribe(JOB_DONE_CHANNEL)
                pubsub.get_message(timeout=5.0)  # the subscribe confirmation: from here on nothing is missed
                _subscribed.set()
                for message in pubsub.listen():
                    try:
                        _wake_local(int(message["data"]))
                    except (TypeError, ValueError):
                        continue
        except Exception:  # noqa: BLE001 - reconnect; waiters poll meanwhile
            _subscribed.clear()
            logger.warning("job-done subscriber lost Redis; reconnecting", exc_info=True)
            time.sleep(1.0)


def _ensure_subscriber() -> None:
    global _subscriber
    if not settings.REDIS_URL or (_subscriber is not None and _subscribed.is_set()):
        return
    with _waiters_lock:
        if _subscriber is None:
            _subscriber = threading.Thread(target=_subscribe_forever, name="job-done-subscriber", daemon=True)
            _subscriber.start()
    # The first waiter in a process would otherwise rely on the slow poll for its signal.
    _subscribed.wait(timeout=2.0)


def job_done_wait(*, job_id: int, is_done: Callable[[], bool], timeout_s: float, poll_s: float = 1.0) -> bool:
    """Block until ``is_done()`` is true (checked on each signal and every ``poll_s``) or timeout."""
    _ensure_subscriber()
    event = threading.Event()
    with _waiters_lock:
        _waiters.setdefault(job_id, []).append(event)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if is_done():
                return True
            if is_stopping():
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            event.wait(min(poll_s, remaining))
            event.clear()
    finally:
        with _waiters_lock:
            events = _waiters.get(job_id, [])
            if event in events:
                events.remove(event)
            if not events:
                _waiters.pop(job_id, None)
