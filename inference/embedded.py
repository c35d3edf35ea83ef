"""The embedded default's in-process executor: start, recovery and expiry (no REDIS_URL, no Celery).

Registered in ``console.embedded.EMBEDDED_SERVICES``: it starts with the ASGI application
and runs jobs dispatched to the local node one at a time (``inference.executor``, a thread,
so the event loop keeps serving requests), first the ones a previous process left behind.
"""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections

from inference.choices import JobStatus
from inference.engines import engine_get
from inference.executor import executor_start, executor_stop, executor_submit
from inference.models import SynthesisJob
from inference.services import job_execute_local, job_requeue_from_node, jobs_expire_overdue

logger = logging.getLogger(__name__)

EXPIRE_INTERVAL_S = 10.0


def _recover() -> list[int]:
    """Jobs the previous process left behind: queued ones run now; running ones were cut off
    by the restart and are requeued (once) like any dead node's jobs."""
    node_name = settings.EMBEDDED_NODE_NAME
    job_requeue_from_node(node_name=node_name)
    ids = list(
        SynthesisJob.objects.filter(status=JobStatus.QUEUED, node__name=node_name)
        .order_by("created_at", "id")
        .values_list("id", flat=True)
    )
    connections.close_all()
    return ids


def _recover_and_run() -> None:
    try:
        for job_id in _recover():
            job_execute_local(job_id, settings.EMBEDDED_NODE_NAME)
    except Exception:  # noqa: BLE001 - recovery must not stop the executor
        logger.exception("embedded executor: recovering queued jobs failed")
        connections.close_all()


def executor_start_sync() -> None:
    # Recovery runs on the executor's own thread, first, before any newly submitted job.
    executor_start(first=_recover_and_run)


def executor_stop_sync(*, wait: bool = True) -> None:
    executor_stop(wait=wait)


def _warm() -> None:
    try:
        engine_get()
    except Exception:  # noqa: BLE001 - the first job reports the engine error
        logger.exception("embedded executor: engine failed to load")


async def start():
    """EMBEDDED_SERVICES entry: start the executor and load the engine in the background."""
    await sync_to_async(executor_start_sync, thread_sensitive=False)()
    # Load the engine on the executor thread so the first request does not pay for it.
    executor_submit(_warm)
    expiry = asyncio.get_running_loop().create_task(_expire_loop())

    async def stop() -> None:
        expiry.cancel()
        await sync_to_async(executor_stop_sync, thread_sensitive=False)()

    return stop


def _expire_once() -> None:
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
