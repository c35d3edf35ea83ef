"""Process-wide synthesis runtime: the one loaded engine, job listeners, and job-done signals.

Contract with the fleet agent (CONTRACTS.md): ``engine_get()`` loads the configured engine
once per process; ``engine_clear_and_reload()`` is ops "restart"; listeners registered with
``add_job_listener(cb)`` are called as ``cb(job_id, outcome, duration_s, rtf)`` whenever a job
finishes in this process, so the agent can stream success rate, latency and RTF.

Job-done signals let the synchronous speech endpoint wake as soon as a job finishes, even
when the job ran in another process (a node's Celery worker): the finishing process
publishes on a Redis channel; waiters in the console keep one subscriber thread per process.
The database stays the source of truth: waiters always re-read the job, and poll it at a
slow pace in case a signal is lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings

from console.redis_client import redis_client
from inference.engines.base import SynthesisEngine, engine_create

logger = logging.getLogger(__name__)

_engine: SynthesisEngine | None = None
_engine_lock = threading.Lock()

JobListener = Callable[[int, str, float, "float | None"], None]
job_listeners: list[JobListener] = []


def engine_get() -> SynthesisEngine:
    """The loaded engine of this process (``settings.VOXFLEET_ENGINE``), loading it on first use."""
    global _engine
    engine = _engine
    if engine is not None:
        return engine
    with _engine_lock:
        if _engine is None:
            candidate = engine_create()
            candidate.load()
            _engine = candidate
        return _engine


def engine_version_label(engine: SynthesisEngine) -> str:
    """What jobs record as ``engine_version``: replays are byte-identical only within one label."""
    return f"{engine.name}-{engine.version}"


def _vram_bytes() -> dict:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a runtime dependency
        return {}
    if not torch.cuda.is_available():
        return {}
    return {"allocated": int(torch.cuda.memory_allocated()), "reserved": int(torch.cuda.memory_reserved())}


def engine_clear_and_reload() -> dict:
    """Ops "restart": drop caches, unload, free VRAM and load the engine again.

    Returns ``{"vram_before": {...}, "vram_after": {...}, "engine": describe(), "reload_s": float}``;
    the VRAM dicts are empty on hosts without CUDA.
    """
    global _engine
    with _engine_lock:
        before = _vram_bytes()
        started = time.perf_counter()
        if _engine is not None:
            try:
                _engine.clear_caches()
            finally:
                _engine.unload()
            _engine = None
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover
            pass
        fresh = engine_create()
        fresh.load()
        _engine = fresh
        return {
            "vram_before": before,
            "vram_after": _vram_bytes(),
            "engine": fresh.describe(),
            "reload_s": round(time.perf_counter() - started, 3),
        }


def engine_loaded() -> SynthesisEngine | None:
    """The engine if this process has loaded one (no loading)."""
    return _engine


def add_job_listener(callback: JobListener) -> None:
    if callback not in job_listeners:
        job_listeners.append(callback)


def remove_job_listener(callback: JobListener) -> None:
    if callback in job_listeners:
        job_listeners.remove(callback)


def job_listeners_notify(*, job_id: int, outcome: str, duration_s: float, rtf: float | None) -> None:
    # A broken listener (a dashboard hiccup) must never fail or re-run a billed job.
    for callback in list(job_listeners):
        try:
            callback(job_id, outcome, duration_s, rtf)
        except Exception:  # noqa: BLE001
            logger.exception("job listener %r failed", callback)


# --- job-done signals ------------------------------------------------------------------

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


def job_done_notify(*, job_id: int) -> None:
    """Tell waiters (in this process and, with Redis, in every console process) a job finished."""
    _wake_local(job_id)
    if settings.REDIS_URL:
        try:
            redis_client().publish(JOB_DONE_CHANNEL, str(job_id))
        except Exception:  # noqa: BLE001 - waiters poll the database as a fallback
            logger.warning("could not publish job-done for job %s", job_id, exc_info=True)


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
