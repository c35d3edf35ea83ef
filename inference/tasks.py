"""Celery tasks for synthesis: thin wrappers that take an id and call a service."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError, connections

from inference.services import SYNTHESIZE_TASK, job_execute, jobs_expire_overdue, jobs_recover

# A database fault is retried with backoff (1, 2, 4 … s, at most this) until the job's own
# deadline would have passed anyway (JOB_TIMEOUT_S / this many tries).
CLAIM_RETRY_MAX_DELAY_S = 5
CLAIM_RETRIES = 30


@shared_task(name=SYNTHESIZE_TASK, bind=True, acks_late=True, ignore_result=True, max_retries=CLAIM_RETRIES)
def synthesize(self, job_id: int, node_name: str | None = None) -> None:
    """Run one job on the node whose queue delivered it ("node.<name>").

    ``acks_late`` (plus reject-on-worker-lost in settings): a worker that dies mid-job gets
    the message redelivered; ``job_execute``'s conditional claim makes the redelivery a
    no-op when the job already finished or moved to another node. The job services send
    it by name (``inference.services.dispatch``), so they never import this module.
    """
    if node_name is None:
        routing_key = (self.request.delivery_info or {}).get("routing_key") or ""
        node_name = routing_key.removeprefix("node.")
    try:
        job_execute(job_id=int(job_id), node_name=node_name)
    except (OperationalError, InterfaceError) as exc:
        # The database failed (a PostgreSQL restart): the claim may not have happened, so the
        # message must not be acked away — retry on the same queue; the conditional claim makes
        # a retry of a job that did start (or finished elsewhere) a no-op.
        connections.close_all()  # this thread's broken connections; the next try opens fresh ones
        raise self.retry(exc=exc, countdown=min(2**self.request.retries, CLAIM_RETRY_MAX_DELAY_S)) from exc


@shared_task(name="inference.jobs_expire_overdue", ignore_result=True)
def expire_overdue() -> int:
    """Fail (and release) jobs past their deadline; scheduled by beat."""
    return len(jobs_expire_overdue())


@shared_task(name="inference.jobs_recover", ignore_result=True)
def recover() -> dict:
    """Requeued jobs to nodes that came back, lost messages republished, overdue jobs failed."""
    return {name: len(ids) for name, ids in jobs_recover().items()}
