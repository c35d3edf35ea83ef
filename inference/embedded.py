"""The in-process job executor of the embedded default (no REDIS_URL, no Celery).

Registered in ``console.embedded.EMBEDDED_SERVICES``: it starts with the ASGI application
and runs jobs dispatched to the local node one at a time (prefetch 1, like a node's
worker), in a thread so the event loop keeps serving requests.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)

_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _run(job_id: int, node_name: str) -> None:
    from inference.services import job_execute

    try:
        job_execute(job_id=job_id, node_name=node_name)
    except Exception:  # noqa: BLE001 - keep the executor alive for the next job
        logger.exception("embedded executor: job %s crashed", job_id)
    finally:
        # Embedded means SQLite (a reconnect is free); closing also means a stopped executor
        # leaves no session behind on the database.
        connections.close_all()


def executor_submit(*, job_id: int, node_name: str) -> bool:
    """Queue a job on the in-process executor; False when it is not running (the job stays
    queued and is picked up when the executor starts)."""
    with _lock:
        executor = _executor
    if executor is None:
        logger.info("embedded executor not running; job %s stays queued", job_id)
        return False
    executor.submit(_run, job_id, node_name)
    return True


def _recover() -> list[int]:
    """Jobs the previous process left behind: queued ones run now; running ones were cut off
    by the restart and are requeued (once) like any dead node's jobs."""
    from inference.models import JobStatus, SynthesisJob
    from inference.services import job_requeue_from_node

    node_name = settings.EMBEDDED_NODE_NAME
    job_requeue_from_node(node_name=node_name)
    ids = list(
        SynthesisJob.objects.filter(status=JobStatus.QUEUED, node__name=node_name)
        .order_by("created_at", "id")
        .values_list("id", flat=True)
    )
    connections.close_all()
    return ids


def executor_start_sync() -> None:
    global _executor
    with _lock:
        if _executor is not None:
            return
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synthesis")
        # Recovery runs on the executor's own thread, first, before any newly submitted job.
        _executor.submit(_recover_and_run)


def _recover_and_run() -> None:
    try:
        for job_id in _recover():
            _run(job_id, settings.EMBEDDED_NODE_NAME)
    except Exception:  # noqa: BLE001 - recovery must not stop the executor
        logger.exception("embedded executor: recovering queued jobs failed")
        connections.close_all()


def executor_stop_sync(*, wait: bool = True) -> None:
    global _executor
    with _lock:
        executor, _executor = _executor, None
    if executor is not None:
        executor.shutdown(wait=wait, cancel_futures=True)


async def start():
    """EMBEDDED_SERVICES entry: start the executor and load the engine in the background."""
    await sync_to_async(executor_start_sync, thread_sensitive=False)()

    def warm() -> None:
        from inference.engines import engine_get

        try:
            engine_get()
        except Exception:  # noqa: BLE001 - the first job reports the engine error
            logger.exception("embedded executor: engine failed to load")

    # Load the engine on the executor thread so the first request does not pay for it.
    with _lock:
        if _executor is not None:
            _executor.submit(warm)

    expiry = asyncio.get_running_loop().create_task(_expire_loop())

    async def stop() -> None:
        expiry.cancel()
        await sync_to_async(executor_stop_sync, thread_sensitive=False)()

    return stop


EXPIRE_INTERVAL_S = 10.0


def _expire_once() -> None:
    from inference.services import jobs_expire_overdue

    try:
        jobs_expire_overdue()
    finally:
        connections.close_all()


async def _expire_loop() -> None:
    """What beat's "inference-expire-overdue" does in a full deployment."""
    while True:
        await asyncio.sleep(EXPIRE_INTERVAL_S)
        try:
            await sync_to_async(_expire_once, thread_sensitive=False)()
        except Exception:  # noqa: BLE001 - try again next round
            logger.exception("embedded executor: expiring overdue jobs failed")
